"""The light tissue QC: pen ink and blurred regions come out of detected tissue; real H&E stays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mixsup.config import TilingConfig, TissueConfig, load_config
from mixsup.errors import ConfigError
from mixsup.slides import open_slide
from mixsup.slides.tiling import load_tileset, slide_tissue, tile_slide
from mixsup.slides.tissue_qc import blur_mask, clean_tissue, describe_removed, pen_mask
from mixsup.synth.pyramid_tiff import array_renderer, write_pyramid

QC = TissueConfig(remove_pen=True, remove_blur=True)
DEFAULT = TissueConfig()
PEN = (DEFAULT.pen_min_saturation, (DEFAULT.pen_hue_min, DEFAULT.pen_hue_max),
       DEFAULT.pen_max_value)


def tissue(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """Pink eosin with purple haematoxylin speckles, textured at every pixel."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[:] = (225, 140, 185)
    nuclei = rng.random((h, w)) < 0.2
    img[nuclei] = (110, 70, 160)
    img += rng.normal(0, 12, img.shape)
    return img.clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("ink", [(40, 70, 180), (30, 140, 60), (20, 20, 25)],
                         ids=["blue", "green", "black"])
def test_a_pen_stroke_on_pink_tissue_is_removed_and_the_tissue_kept(ink):
    rgb = tissue()
    rgb[50:62, :] = ink
    stroke = np.zeros(rgb.shape[:2], bool)
    stroke[50:62, :] = True
    mask = np.ones(rgb.shape[:2], bool)
    cleaned, removed = clean_tissue(rgb, mask, TissueConfig(remove_pen=True), 8.0)
    np.testing.assert_array_equal(cleaned, ~stroke)
    assert removed == {"pen": pytest.approx(stroke.mean(), abs=1e-6)}


def test_haematoxylin_and_eosin_are_not_ink():
    """H&E's hues (pink, purple, dense dark-purple nuclei) lie outside the ink's."""
    colours = np.array([[[225, 140, 185], [110, 70, 160], [70, 40, 120], [90, 80, 150],
                         [240, 200, 220], [60, 35, 90]]], np.uint8)
    assert not pen_mask(colours, *PEN).any()


def test_a_blurred_half_is_removed():
    rgb = tissue(160, 240)
    rgb[:, 120:] = cv2.GaussianBlur(rgb, (0, 0), 4)[:, 120:]
    mask = np.ones(rgb.shape[:2], bool)
    cleaned, removed = clean_tissue(rgb, mask, TissueConfig(remove_blur=True), 8.0)
    assert cleaned[:, :100].all()  # sharp: kept
    assert not cleaned[:, 140:].any()  # blurred, away from the seam: removed
    assert removed["blur"] == pytest.approx(0.5, abs=0.06)
    assert not blur_mask(tissue(), DEFAULT.blur_max_variance, 17).any()


def test_qc_off_changes_nothing_and_reports_nothing():
    rgb = tissue()
    rgb[50:62, :] = (40, 70, 180)
    mask = np.random.default_rng(1).random(rgb.shape[:2]) < 0.5
    cleaned, removed = clean_tissue(rgb, mask, DEFAULT, 8.0)
    np.testing.assert_array_equal(cleaned, mask)
    assert removed == {}
    assert describe_removed({"pen": 0.0123, "blur": 0.0}) == "pen 1.23%, blur 0.00%"


def test_the_qc_defaults_leave_results_and_stored_keys_as_they_were():
    """Off by default; new settings at their defaults stay out of the keys of stored tilings
    and features, so that those made before the QC are reused."""
    assert not DEFAULT.remove_pen and not DEFAULT.remove_blur and DEFAULT.source == "otsu"
    assert not set(DEFAULT.identity()) & set(TissueConfig.LATER_FIELDS)
    assert set(QC.identity()) >= {"remove_pen", "remove_blur"}


def test_qc_is_refused_on_outlines_from_elsewhere():
    with pytest.raises(ConfigError, match="remove_pen"):
        load_config("tiny", overrides=["tissue.source=geojson", "tissue.remove_pen=true"])


def test_tiling_records_the_share_removed(tmp_path):
    rgb = np.full((1024, 1024, 3), 245, np.uint8)
    rgb[128:896, 128:896] = cv2.resize(tissue(96, 96), (768, 768),
                                       interpolation=cv2.INTER_NEAREST)
    rgb[512:576, 128:896] = (40, 70, 180)  # one row of patches
    write_pyramid(tmp_path / "inked.tiff", 1024, 1024, array_renderer(rgb), mpp=1.0)
    cfg = TilingConfig(mpp=1.0, patch_size=64, overlap=0)
    with open_slide(tmp_path / "inked.tiff") as slide:
        plain = tile_slide(slide, "plain", cfg, DEFAULT, tmp_path)
        cleaned = tile_slide(slide, "inked", cfg, TissueConfig(remove_pen=True), tmp_path)
    assert plain.tissue_removed == {} and plain.tissue_source == "otsu"
    assert cleaned.tissue_removed["pen"] == pytest.approx(64 / 768, abs=0.03)
    assert len(plain) == 12 * 12 and len(cleaned) == 11 * 12
    assert 512 in plain.coords[:, 1] and 512 not in cleaned.coords[:, 1]
    assert cleaned.key != plain.key
    stored = load_tileset(tmp_path, "inked", cleaned.key)
    assert stored is not None and stored.tissue_removed == cleaned.tissue_removed


@pytest.mark.parametrize(("name", "mpp", "most"), [
    ("CMU-1-Small-Region.svs", None, {"pen": 0.01, "blur": 0.0}),  # its green margin ink
    ("tcga-cr-7395-01a-01-ts1.svs", 0.25, {"pen": 0.0, "blur": 0.0}),
])
def test_real_slides_lose_no_tissue_but_ink(shared, name, mpp, most):
    path = shared / "slides" / name
    if not path.is_file():
        pytest.skip(f"../shared/data absent: {path} not found")
    with open_slide(path, mpp=mpp) as slide:
        found = slide_tissue(slide, QC)
    assert found.mask.mean() > 0.2
    assert set(found.removed) == {"pen", "blur"}
    for check, share in most.items():
        assert found.removed[check] <= share, (check, found.removed)
