"""Map stores: streamed writes equal in-memory maps, atomic publication, lazy reads, and the
inference iterator's routing of batches to per-slide sinks."""

from __future__ import annotations

import numpy as np
import pytest

from mixsup.inference import map_store
from mixsup.inference.map_store import MapWriter, open_maps, write_maps
from mixsup.inference.patch_maps import PatchMaps, Router, memory_sink


def _random_maps(n: int, m: int = 4, seed: int = 0) -> PatchMaps:
    rng = np.random.default_rng(seed)
    return PatchMaps(rng.random((n, m, m)).astype(np.float16),
                     rng.random(n).astype(np.float32))


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_streamed_store_equals_the_maps(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(map_store, "CHUNK", 16)
    n = 53  # three whole chunks and a partial one
    pm = _random_maps(n)
    coords = np.arange(2 * n).reshape(n, 2)
    writer = MapWriter(tmp_path / "s.zarr", coords, 4, {"key": "k"})
    for a in range(0, n, batch):
        writer.write(pm.maps[a:a + batch], pm.max_prob[a:a + batch])
        assert not (tmp_path / "s.zarr").exists()  # nothing visible before finish
    writer.finish()
    got = open_maps(tmp_path / "s.zarr", expect_key="k")
    assert got is not None
    np.testing.assert_array_equal(got.coords, coords)
    np.testing.assert_array_equal(got.max_prob, pm.max_prob)
    np.testing.assert_array_equal(got.maps[:], pm.maps)
    np.testing.assert_array_equal(np.stack(list(got.maps)), pm.maps)  # chunked iteration
    rows = np.array([0, 17, 52])
    np.testing.assert_array_equal(got.maps[rows], pm.maps[rows])
    mask = pm.max_prob > 0.5
    np.testing.assert_array_equal(got.maps[mask], pm.maps[mask])
    assert got.pixel_fraction == pytest.approx(float((pm.maps >= 0.5).mean()))
    assert open_maps(tmp_path / "s.zarr", expect_key="other tiling") is None


def test_incomplete_or_aborted_writer_leaves_no_store(tmp_path):
    pm = _random_maps(10)
    writer = MapWriter(tmp_path / "s.zarr", np.zeros((10, 2)), 4, {})
    writer.write(pm.maps[:4], pm.max_prob[:4])
    with pytest.raises(ValueError, match="4 of 10"):
        writer.finish()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="outside its 2 patches"):
        MapWriter(tmp_path / "t.zarr", np.zeros((2, 2)), 4, {}).write(pm.maps, pm.max_prob)


def test_empty_slide_gets_an_empty_store(tmp_path):
    stored = write_maps(tmp_path / "e.zarr", np.zeros((0, 2)), _random_maps(0), {})
    again = open_maps(tmp_path / "e.zarr")
    assert again is not None and len(again.coords) == 0 and stored.pixel_fraction == 0.0


def test_router_splits_batches_at_slide_boundaries():
    sizes = [3, 0, 5, 2]
    jobs = [(10 + j, np.zeros((n, 2))) for j, n in enumerate(sizes)]
    pm = _random_maps(sum(sizes), m=2)
    router = Router(jobs, 2, memory_sink)
    out = list(router.empty())
    for a in range(0, len(pm.max_prob), 4):  # batches of 4 straddle slides
        out += list(router.feed(a, pm.maps[a:a + 4], pm.max_prob[a:a + 4]))
    assert sorted(i for i, _ in out) == [10, 11, 12, 13]
    ends = np.cumsum(sizes)
    got = dict(out)
    for j, (end, n) in enumerate(zip(ends, sizes, strict=True)):
        np.testing.assert_array_equal(got[10 + j].max_prob, pm.max_prob[end - n:end])
        np.testing.assert_array_equal(got[10 + j].maps, pm.maps[end - n:end])


def test_router_reassembles_a_slide_whose_later_part_arrives_first():
    """Two workers' stretches meet inside slide 1: its tail comes before its head."""
    sizes = [4, 6, 3]
    jobs = [(j, np.zeros((n, 2))) for j, n in enumerate(sizes)]
    pm = _random_maps(sum(sizes), m=2)
    router = Router(jobs, 2, memory_sink)
    order = [(7, 3), (0, 3), (10, 3), (3, 2), (5, 2)]  # (first patch, count), as delivered
    out = []
    for a, k in order:
        out += list(router.feed(a, pm.maps[a:a + k], pm.max_prob[a:a + k]))
    assert [i for i, _ in out] == [2, 0, 1]
    got = dict(out)
    np.testing.assert_array_equal(got[1].maps, pm.maps[4:10])
    np.testing.assert_array_equal(got[1].max_prob, pm.max_prob[4:10])
    assert not router.sinks


def test_a_store_written_in_runs_out_of_order_equals_one_written_in_order(tmp_path):
    """Rows of one slide from two loader workers: the later run first, neither aligned to a
    chunk; only a chunk and the queued blocks stay in memory."""
    from mixsup.inference.map_store import CHUNK, MapWriter

    n = 3 * CHUNK + 77
    pm = _random_maps(n, m=3)
    coords = np.zeros((n, 2))
    cut = CHUNK + 45
    writer = MapWriter(tmp_path / "runs.zarr", coords, 3, {})
    for a in range(cut, n, 50):  # the second stretch, in batches of 50
        b = min(a + 50, n)
        writer.write(pm.maps[a:b], pm.max_prob[a:b], a)
    for a in range(0, cut, 50):
        b = min(a + 50, cut)
        writer.write(pm.maps[a:b], pm.max_prob[a:b], a)
        assert sum(r.rows for r in writer._runs.values()) < 2 * CHUNK
    got = writer.finish()
    np.testing.assert_array_equal(got.maps[:], pm.maps)
    np.testing.assert_array_equal(got.max_prob, pm.max_prob)


def test_an_unfinished_store_is_refused_and_leaves_nothing(tmp_path):
    from mixsup.inference.map_store import MapWriter

    pm = _random_maps(10, m=2)
    writer = MapWriter(tmp_path / "u.zarr", np.zeros((10, 2)), 2, {})
    writer.write(pm.maps[:4], pm.max_prob[:4], 0)
    writer.write(pm.maps[6:], pm.max_prob[6:], 6)
    with pytest.raises(ValueError, match="8 of 10"):
        writer.finish()
    assert not list(tmp_path.iterdir())


def test_worker_batches_give_each_worker_one_contiguous_stretch():
    from mixsup.inference.patch_maps import worker_batches

    for sizes, workers in (([100], 2), ([30, 0, 41, 7, 22], 2), ([5, 5, 5], 3), ([9], 1),
                           ([50, 3], 3), ([26], 3), ([9, 8, 9], 3)):
        batches = worker_batches(sizes, 8, workers)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(sum(sizes)))
        for b in batches:
            assert list(b) == list(range(b.start, b.start + len(b)))
        per_worker = [[i for k, b in enumerate(batches) if k % workers == w for i in b]
                      for w in range(workers)]
        for got in per_worker:  # what the DataLoader's round-robin hands each worker
            assert got == list(range(got[0], got[0] + len(got))) if got else True


def test_stitching_from_a_store_equals_stitching_in_memory(tmp_path):
    from mixsup.render.heatmap import stitch, stitch_to_zarr

    n = 12
    pm = _random_maps(n, m=8)
    coords = np.array([(x * 48, y * 48) for y in range(3) for x in range(4)])
    stored = write_maps(tmp_path / "s.zarr", coords, pm, {})
    a = stitch(coords, pm.maps, 64, (240, 200), 8.0)
    b = stitch(coords, stored.maps, 64, (240, 200), 8.0)
    np.testing.assert_array_equal(a[0], b[0])
    o1 = stitch_to_zarr(tmp_path / "p1.zarr", coords, pm.maps, 64, (240, 200), 8.0, 16.0,
                        band=5)
    o2 = stitch_to_zarr(tmp_path / "p2.zarr", coords, stored.maps, 64, (240, 200), 8.0, 16.0,
                        band=5)
    # the overview comes from the same read of the maps and equals ``stitch`` on its grid
    overview = stitch(coords, pm.maps, 64, (240, 200), 16.0)
    for got in (o1, o2):
        np.testing.assert_array_equal(got[0], overview[0])
        np.testing.assert_array_equal(got[1], overview[1])
    import zarr

    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "p1.zarr"))[:],
                                  zarr.open_array(str(tmp_path / "p2.zarr"))[:])


def test_a_failed_write_on_the_writer_thread_fails_finish_and_leaves_no_store(tmp_path):
    from mixsup.inference.map_store import CHUNK, MapWriter

    class Broken:
        def __setitem__(self, key, value):
            raise OSError("disk full")

    n = 3 * CHUNK
    writer = MapWriter(tmp_path / "b.zarr", np.zeros((n, 2)), 2, {})
    writer._prob = Broken()
    pm = _random_maps(n, m=2)
    with pytest.raises(OSError, match="disk full"):
        writer.write(pm.maps, pm.max_prob)
        writer.finish()
    assert not (tmp_path / "b.zarr").exists()
    assert not list(tmp_path.iterdir())
