"""The direct tile reader must give OpenSlide's pixels exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mixsup.slides import open_slide
from mixsup.slides.backends import tifftiles
from mixsup.slides.backends.openslide import OpenSlideBackend
from mixsup.slides.backends.tifftiles import TiffTilesBackend


def regions(dims: tuple[int, int], tile: int, rng: np.random.Generator):
    """Tile-aligned and unaligned windows, windows across the right and bottom edges and
    wholly outside, then random ones."""
    w, h = dims
    yield (0, 0), (tile, tile)
    yield (tile, tile), (2 * tile, tile)
    yield (tile // 3, tile // 2 + 1), (tile + 17, 2 * tile - 5)
    yield (w - 37, h - 41), (100, 90)
    yield (w - 5, 0), (64, 64)
    yield (-20, -30), (80, 70)
    yield (w + 10, h + 10), (16, 16)
    for _ in range(25):
        size = rng.integers(1, 3 * tile, 2)
        yield (int(rng.integers(-tile, w)), int(rng.integers(-tile, h))), (int(size[0]),
                                                                           int(size[1]))


def assert_same_pixels(path, rng) -> int:
    """Compares every level; returns the number of levels the direct path decoded."""
    mine, ref = TiffTilesBackend(str(path), 8 << 20), OpenSlideBackend(str(path), 8 << 20)
    try:
        assert mine.level_dimensions == ref.level_dimensions
        assert mine.level_downsamples == ref.level_downsamples
        assert mine.mpp() == ref.mpp()
        direct = 0
        for level, lv in enumerate(mine._levels):
            direct += lv is not None
            ds = mine.level_downsamples[level]
            tile = lv.tile_w if lv else 64
            for (x, y), size in regions(mine.level_dimensions[level], tile, rng):
                loc = (round(x * ds), round(y * ds))
                got, want = mine.read_rgb(loc, level, size), ref.read_rgb(loc, level, size)
                assert got.shape == want.shape
                assert np.array_equal(got, want), (path, level, loc, size)
        return direct
    finally:
        mine.close()
        ref.close()


@pytest.mark.parametrize("name", ["CMU-1-Small-Region.svs", "tcga-cr-7395-01a-01-ts1.svs",
                                  "boxes.tiff", "small.svs"])
def test_real_slides_match_openslide_pixel_for_pixel(shared, name):
    """Aperio JPEG with shared tables and RGB-coded tiles, Aperio JPEG 2000, deflate."""
    assert assert_same_pixels(shared / "slides" / name, np.random.default_rng(0)) >= 1


def test_generated_jpeg_pyramid_matches_openslide_on_every_level(tmp_path):
    """YCbCr JPEG tiles, levels as pages (the writer of mixsup synth)."""
    from mixsup.synth.shapes import make_shapes

    data = make_shapes(tmp_path, n_slides=1, size=2100, seed=2, progress=False)
    path = next((data / "slides").glob("*.tiff"))
    assert assert_same_pixels(path, np.random.default_rng(1)) == 3


def test_auto_prefers_the_direct_reader_and_falls_back_to_openslide(shared, shapes_data):
    path = next((shapes_data / "slides").glob("*.tiff"))
    with open_slide(path) as slide:
        assert slide.backend == "tifftiles"
    with open_slide(shared / "slides" / "boxes_0.dcm") as slide:  # DICOM: not a TIFF
        assert slide.backend == "openslide"
    with open_slide(shared / "slides" / "kidney-48-5.tif") as slide:  # one strip
        assert slide.backend == "tiffslide"


def test_tile_cache_is_bounded_and_shared_by_the_process(shapes_data, monkeypatch):
    monkeypatch.setattr(tifftiles, "_process_cache", tifftiles._process_cache.__wrapped__)
    path = str(next((shapes_data / "slides").glob("*.tiff")))
    b = TiffTilesBackend(path, 3 * 256 * 256 * 3)  # room for three 256 px tiles
    try:
        decoded: list[int] = []
        real = b._levels[0].decode

        def counting(data, index, **kw):
            decoded.append(index)
            return real(data, index, **kw)

        b._levels[0] = dataclasses.replace(b._levels[0], decode=counting)
        b.read_rgb((0, 0), 0, (512, 256))  # two tiles
        b.read_rgb((0, 0), 0, (512, 256))  # cached
        assert decoded == [0, 1]
        b.read_rgb((0, 256), 0, (768, 256))  # three more; the cache keeps three
        assert len(decoded) == 5
        assert b._cache.currsize <= b._cache.maxsize
        b.read_rgb((0, 0), 0, (256, 256))  # evicted: decoded again
        assert len(decoded) == 6
    finally:
        b.close()



def test_a_tile_it_cannot_decode_is_read_by_openslide(shared):
    path = str(shared / "slides" / "CMU-1-Small-Region.svs")
    mine, ref = TiffTilesBackend(path, 0), OpenSlideBackend(path, 1 << 20)
    try:
        def broken(*args, **kw):
            raise RuntimeError("corrupt JPEG data")

        mine._levels[0] = dataclasses.replace(mine._levels[0], decode=broken)
        want = ref.read_rgb((100, 50), 0, (300, 200))
        assert np.array_equal(mine.read_rgb((100, 50), 0, (300, 200)), want)
    finally:
        mine.close()
        ref.close()


def test_only_vendors_openslide_reads_as_a_plain_grid(shared, monkeypatch):
    import openslide

    monkeypatch.setattr(openslide.OpenSlide, "detect_format",
                        classmethod(lambda cls, path: "ventana"))
    with pytest.raises(tifftiles.UnsupportedLayout, match="ventana"):
        TiffTilesBackend(str(shared / "slides" / "CMU-1-Small-Region.svs"), 1 << 20)
