from __future__ import annotations

import os

import numpy as np
import pytest

from mixsup.config import TilingConfig, TissueConfig
from mixsup.slides import open_slide, tile_slide
from mixsup.slides.tiling import NoTissueWarning, grid_coords, load_tileset, tissue_fractions
from mixsup.slides.tissue import tissue_mask
from mixsup.synth.pyramid_tiff import array_renderer, write_pyramid


def test_grid_respects_size_and_overlap():
    coords = grid_coords((1000, 600), size0=512, stride0=384)
    assert coords.tolist() == [[0, 0], [384, 0]]
    coords = grid_coords((2000, 2000), size0=100, stride0=50)
    assert len(coords) == 39 * 39
    assert grid_coords((50, 50), size0=100, stride0=50).shape == (0, 2)


def test_tissue_fraction_by_integral_image():
    mask = np.zeros((10, 10), bool)
    mask[:, :5] = True
    frac = tissue_fractions(mask, mask_ds=10.0, coords=np.array([[0, 0], [50, 0], [25, 0]]),
                            size0=50)
    assert frac.tolist() == pytest.approx([1.0, 0.0, 0.4], abs=0.2)


def test_otsu_and_grey_find_tissue_on_real_slide(shared):
    slide = open_slide(shared / "slides" / "CMU-1-Small-Region.svs")
    thumb, mpp = slide.thumbnail(8.0)
    for method in ("otsu", "grey"):
        mask = tissue_mask(thumb, TissueConfig(method=method), mpp)
        assert 0.2 < mask.mean() < 0.95, method


def test_blank_image_has_no_tissue():
    blank = np.full((200, 200, 3), 240, np.uint8)
    blank += np.random.default_rng(0).integers(0, 6, blank.shape, dtype=np.uint8)
    assert not tissue_mask(blank, TissueConfig(), 8.0).any()


def test_tiling_real_slide_paper_settings(shared, tmp_path):
    slide = open_slide(shared / "slides" / "CMU-1-Small-Region.svs")
    tiles = tile_slide(slide, "cmu", TilingConfig(), TissueConfig(), tmp_path)
    assert len(tiles) > 5
    assert tiles.size0 == pytest.approx(512 * 0.5 / 0.499)
    assert (tiles.coords[:, 0] + tiles.size0 <= 2220 + 1).all()
    assert (tiles.tissue >= 0.25).all()
    # neighbouring patches are a stride of 384 target px apart
    xs = np.unique(tiles.coords[:, 0])
    assert np.diff(xs).min() == pytest.approx(384 * 0.5 / 0.499, abs=1)
    assert (tmp_path / "cmu_tissue.jpg").is_file()


def test_tiling_is_reused_when_settings_match(shapes_data, tmp_path):
    slide = open_slide(shapes_data / "slides" / "slide_000.tiff")
    cfg = TilingConfig(mpp=1.0, patch_size=64, overlap=16)
    first = tile_slide(slide, "s0", cfg, TissueConfig(), tmp_path)
    mtime = os.stat(tmp_path / "s0.npz").st_mtime_ns
    again = tile_slide(slide, "s0", cfg, TissueConfig(), tmp_path)
    assert os.stat(tmp_path / "s0.npz").st_mtime_ns == mtime
    np.testing.assert_array_equal(first.coords, again.coords)
    other = tile_slide(slide, "s0", TilingConfig(mpp=1.0, patch_size=64, overlap=0),
                       TissueConfig(), tmp_path)
    assert len(other) != len(first)
    assert load_tileset(tmp_path, "s0", first.key) is None  # replaced by the new settings


def test_tiling_finer_than_level0_warns(shapes_data):
    from mixsup.slides.tiling import UpsamplingWarning

    slide = open_slide(shapes_data / "slides" / "slide_000.tiff")
    with pytest.warns(UpsamplingWarning, match="slide_000.tiff.*upsampled 2x"):
        tile_slide(slide, "s0", TilingConfig(mpp=slide.mpp / 2, patch_size=64, overlap=0),
                   TissueConfig())


def test_slide_without_tissue_warns_and_yields_nothing(tmp_path):
    blank = np.full((600, 600, 3), 244, np.uint8)
    write_pyramid(tmp_path / "blank.tiff", 600, 600, array_renderer(blank), mpp=1.0)
    slide = open_slide(tmp_path / "blank.tiff")
    with pytest.warns(NoTissueWarning, match="blank.tiff"):
        tiles = tile_slide(slide, "blank", TilingConfig(mpp=1.0, patch_size=64, overlap=0),
                           TissueConfig(), tmp_path)
    assert len(tiles) == 0
    assert load_tileset(tmp_path, "blank") is not None


@pytest.mark.parametrize("seed", range(4))
def test_fill_holes_matches_scipy(seed):
    from scipy import ndimage

    from mixsup.slides.tissue import fill_holes

    rng = np.random.default_rng(seed)
    mask = rng.random((60, 80)) < 0.55  # many small holes, some touching the border
    mask[10:30, 10:30] = True
    mask[15:25, 15:25] = False  # one large hole
    np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
