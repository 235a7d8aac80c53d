"""The E-step switches and the rule that pixel labels win over pseudo-labels, exactly."""

from __future__ import annotations

import numpy as np
import shapely

from mixsup.config import Stage1Config
from mixsup.inference.map_store import write_maps
from mixsup.inference.patch_maps import PatchMaps
from mixsup.labels.regions import IGNORE, NEGATIVE, POSITIVE, Region, SlideAnnotations
from mixsup.train.dataset import MixedPatches
from mixsup.train.pools import AveragedMaps, Pools, average_teacher, em_pools, rows_in
from mixsup.train.pseudo import annotation_wins, keep_patches, pseudo_target
from mixsup.train.results import PoolSizes, PoolStats


def test_a_positive_slide_with_nothing_over_t_keeps_its_top_patches():
    p = np.array([0.1, 0.3, 0.2, 0.05])
    np.testing.assert_array_equal(keep_patches(p, 0.4), [False] * 4)
    np.testing.assert_array_equal(keep_patches(p, 0.4, keep_top=2), [False, True, True, False])
    # once any patch reaches T the paper's rule applies unchanged
    q = np.array([0.1, 0.5, 0.2])
    np.testing.assert_array_equal(keep_patches(q, 0.4, keep_top=2), [False, True, False])
    assert keep_patches(np.zeros(0), 0.4, keep_top=3).shape == (0,)


def test_confident_pseudo_labels_leave_the_uncertain_band_out():
    p = np.array([0.0, 0.002, 0.1, 0.24, 0.25, 0.9], np.float32)  # x V=4: 0, .008, .4, .96, 1, 1
    soft, soft_valid = pseudo_target(p, 4.0, 0.01, "soft")
    np.testing.assert_allclose(soft, [0.0, 0.0, 0.4, 0.96, 1.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(soft_valid, np.ones(6))
    target, valid = pseudo_target(p, 4.0, 0.01, "confident")
    np.testing.assert_array_equal(target, [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(valid, [1, 1, 0, 0, 1, 1])


def test_the_annotation_wins_where_it_labels_a_pixel():
    target = np.array([0.7, 0.7, 0.7], np.float32)
    valid = np.array([1.0, 0.0, 1.0], np.float32)
    mask = np.array([NEGATIVE, POSITIVE, IGNORE], np.uint8)
    t, v = annotation_wins(target, valid, mask)
    np.testing.assert_array_equal(t, np.array([0.0, 1.0, 0.7], np.float32))
    np.testing.assert_array_equal(v, [1.0, 1.0, 1.0])


def test_rows_in():
    rows = np.array([[0, 1, 2], [1, 1, 2], [0, 5, 5]])
    other = np.array([[0, 5, 5], [3, 3, 3], [0, 1, 2]])
    np.testing.assert_array_equal(rows_in(rows, other), [True, False, True])
    np.testing.assert_array_equal(rows_in(rows, np.zeros((0, 3), np.int64)), [False] * 3)


def _maps(tmp_path, coords, max_probs):
    root = tmp_path / "maps"
    root.mkdir(parents=True, exist_ok=True)
    n = len(coords)
    return write_maps(root / f"{len(list(root.iterdir()))}.zarr", np.asarray(coords),
                      PatchMaps(np.full((n, 4, 4), 0.9, np.float16),
                                np.asarray(max_probs, np.float32)), {})


def test_annotated_patches_get_no_pseudo_label_or_hard_negative(tmp_path):
    cfg = Stage1Config(batch_size=10, negative_fallback="none")
    maps = {0: _maps(tmp_path, [[0, 0], [64, 0], [128, 0]], [0.9, 0.9, 0.9]),
            1: _maps(tmp_path, [[0, 0], [64, 0]], [0.8, 0.8])}
    fine = np.array([[0, 0, 0], [0, 64, 0], [1, 64, 0]])  # annotated patches of both slides
    pools = em_pools(fine, {0: 1, 1: 0}, maps, cfg, np.random.default_rng(0))
    assert pools.pseudo.tolist() == [[0, 128, 0]]
    assert pools.negative.tolist() == [[1, 0, 0]]
    assert len(pools.pseudo_maps) == 1


def test_keep_top_never_picks_an_annotated_patch(tmp_path):
    cfg = Stage1Config(batch_size=10, negative_fallback="none", positive_keep_top=2)
    maps = {0: _maps(tmp_path, [[0, 0], [64, 0], [128, 0]], [0.3, 0.2, 0.1])}
    pools = em_pools(np.array([[0, 0, 0]]), {0: 1}, maps, cfg, np.random.default_rng(0))
    assert pools.pseudo.tolist() == [[0, 64, 0], [0, 128, 0]]


class _Slide:
    mpp = 0.5


class _Slides:
    def get(self, idx: int) -> _Slide:
        return _Slide()


def test_a_pseudo_row_inside_the_roi_takes_the_pixel_labels(tmp_path):
    """A patch straddling the ROI's edge: annotated pixels keep the outline's label, the rest
    the pseudo-label."""
    ann = SlideAnnotations((Region("ROI", "roi", shapely.box(0, 0, 32, 128)),
                            Region("Tumor", "tumor", shapely.box(0, 0, 16, 128))))
    pools = Pools(fine=np.zeros((0, 3), np.int64), pseudo=np.array([[0, 0, 0]]),
                  pseudo_maps=np.full((1, 4, 4), 0.1, np.float32),
                  negative=np.array([[0, 0, 0]]), stats=PoolStats(PoolSizes(0, 1, 1)))
    ds = MixedPatches([], pools, {0: ann}, patch_size=16, mpp=4.0, reweight=4.0, floor=0.01,
                      augment=False)
    ds.slides = _Slides()
    target, valid = ds.label(0)  # 8 level-0 px per pixel: ROI = columns 0-3, tumour 0-1
    np.testing.assert_array_equal(target[:, :2], 1.0)
    np.testing.assert_array_equal(target[:, 2:4], 0.0)
    np.testing.assert_allclose(target[:, 4:], 0.4, atol=1e-6)
    np.testing.assert_array_equal(valid, 1.0)
    target, valid = ds.label(1)  # a hard negative: the outline's tumour still wins
    np.testing.assert_array_equal(target[:, :2], 1.0)
    np.testing.assert_array_equal(target[:, 2:], 0.0)


def test_the_average_teacher_averages_pixels_and_takes_the_max_of_the_average():
    coords = np.array([[0, 0], [64, 0]])
    a = AveragedMaps(coords, np.array([0.8, 0.2]),
                     np.array([[[0.8, 0.0]], [[0.2, 0.2]]], np.float32))
    b = AveragedMaps(coords, np.array([0.4, 0.6]),
                     np.array([[[0.0, 0.4]], [[0.6, 0.2]]], np.float32))
    moved = AveragedMaps(coords[:1], np.array([0.9]), np.array([[[0.9, 0.9]]], np.float32))
    got = average_teacher([{0: a, 1: moved}, {0: b, 1: b}])
    np.testing.assert_allclose(got[0].maps, [[[0.4, 0.2]], [[0.4, 0.2]]])
    np.testing.assert_allclose(got[0].max_prob, [0.4, 0.4])
    assert got[1] is b  # its patches changed between rounds: the last round's maps
    assert average_teacher([{0: a}])[0] is a
