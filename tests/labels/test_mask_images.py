"""Label mask images (PNG, TIFF, pyramidal TIFF) read as annotations: scale from the slide,
values through annotations.mask_values, and one clear error for each way a mask can be wrong."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import tifffile

from mixsup.config import AnnotationConfig
from mixsup.errors import AnnotationError, DatasetError
from mixsup.labels import table
from mixsup.labels.annotations import read_annotations
from mixsup.labels.formats import mask as mask_format
from mixsup.labels.regions import IGNORE, NEGATIVE, POSITIVE
from tests.labels.samples import iou

SLIDE = (1000, 800)  # level-0 size of the slide the masks belong to


def _mask(ds: int = 8) -> np.ndarray:
    """1 tumour in (160..400, 80..240), 0 negative around it in an ROI, 255 elsewhere."""
    w, h = -(-SLIDE[0] // ds), -(-SLIDE[1] // ds)
    m = np.full((h, w), IGNORE, np.uint8)
    m[40 // ds * 1: 560 // ds, 80 // ds: 720 // ds] = NEGATIVE
    m[80 // ds: 240 // ds, 160 // ds: 400 // ds] = POSITIVE
    return m


def _png(path, m: np.ndarray):
    assert cv2.imwrite(str(path), m)
    return path


def test_png_mask_gives_outlines_at_the_slides_scale(tmp_path):
    m = _mask(ds=8)
    ann = read_annotations(_png(tmp_path / "a.png", m), slide_dimensions=SLIDE)
    assert ann.has_roi
    minx, miny, maxx, maxy = ann.tumor.bounds
    assert (minx, miny, maxx, maxy) == pytest.approx((160, 80, 400, 240), abs=1)
    back = ann.rasterize(0, 0, m.shape[1], m.shape[0], 8.0)
    assert (back == m).mean() > 0.98 and iou(back, m) > 0.97


def test_pyramidal_tiff_is_read_at_its_largest_level_under_the_cap(tmp_path, monkeypatch):
    full = _mask(ds=2)
    path = tmp_path / "a.tiff"
    with tifffile.TiffWriter(path) as tw:
        tw.write(full, tile=(64, 64), subfiletype=0)
        for k in (2, 4):  # reduced levels as pages, nearest (label values stay labels)
            tw.write(full[::k, ::k], tile=(64, 64), subfiletype=1)
    seen = []
    real = mask_format.mask_to_annotations

    def spy(mask, downsample, **kw):
        seen.append((mask.shape, downsample))
        return real(mask, downsample, **kw)

    monkeypatch.setattr(mask_format, "mask_to_annotations", spy)
    monkeypatch.setattr(mask_format, "MAX_PIXELS", full.size // 4)  # level 0 no longer fits
    ann = read_annotations(path, slide_dimensions=SLIDE)
    assert seen == [((full.shape[0] // 2, full.shape[1] // 2), 4.0)]
    assert ann.tumor.bounds == pytest.approx((160, 80, 400, 240), abs=2)
    monkeypatch.setattr(mask_format, "MAX_PIXELS", 10)
    with pytest.raises(AnnotationError, match="smallest level is 125x100 px.*pyramid"):
        read_annotations(path, slide_dimensions=SLIDE)


def test_values_map_through_the_config(tmp_path):
    m = np.where(_mask() == POSITIVE, 255, 0).astype(np.uint8)  # a 0/255 mask
    path = _png(tmp_path / "a.png", m)
    with pytest.raises(AnnotationError, match=r"only 0 and 255.*no tumour.*"
                       r"mask_values=\{0: negative, 255: tumor\}"):
        read_annotations(path, slide_dimensions=SLIDE)
    cfg = AnnotationConfig(mask_values={0: "negative", 255: "tumor"})
    ann = read_annotations(path, cfg, slide_dimensions=SLIDE)
    assert not ann.has_roi  # nothing unlabelled: the whole slide is annotated
    assert ann.tumor.bounds == pytest.approx((160, 80, 400, 240), abs=1)
    # Said explicitly, 255 = unlabelled is taken as meant: negatives in an ROI, no tumour.
    meant = AnnotationConfig(mask_values={0: "negative", 1: "tumor", 255: "ignore"})
    ann = read_annotations(path, meant, slide_dimensions=SLIDE)
    assert ann.has_roi and ann.tumor.is_empty
    with pytest.raises(AnnotationError, match=r"mask values \[7\] have no role"):
        read_annotations(_png(tmp_path / "b.png", np.where(m > 0, 7, 0).astype(np.uint8)),
                         slide_dimensions=SLIDE)


def test_a_mask_needs_its_slide_and_its_slides_shape(tmp_path):
    path = _png(tmp_path / "a.png", _mask())
    with pytest.raises(AnnotationError, match="no coordinates of its own.*--slide"):
        read_annotations(path)
    with pytest.raises(AnnotationError, match=r"\(125x100 px\) does not have its slide's shape"):
        read_annotations(path, slide_dimensions=(1000, 1000))


def test_colour_and_empty_masks_are_refused(tmp_path):
    m = _mask()
    rgb = np.dstack([m, m, m])
    ann = read_annotations(_png(tmp_path / "grey.png", rgb), slide_dimensions=SLIDE)
    assert ann.tumor.area > 0  # three equal channels are one channel
    rgb[..., 2] = 7
    with pytest.raises(AnnotationError, match="3 different channels"):
        read_annotations(_png(tmp_path / "rgb.png", rgb), slide_dimensions=SLIDE)
    with pytest.raises(AnnotationError, match="labels no pixel"):
        read_annotations(_png(tmp_path / "none.png", np.full_like(m, IGNORE)),
                         slide_dimensions=SLIDE)
    broken = tmp_path / "broken.tiff"
    broken.write_bytes(b"II*\x00" + b"\x00" * 20)
    with pytest.raises(AnnotationError, match="unreadable TIFF mask"):
        read_annotations(broken, slide_dimensions=SLIDE)


def test_dataset_finds_mask_files_and_refuses_two_files_for_one_slide(tmp_path):
    (tmp_path / "slides").mkdir()
    (tmp_path / "slides" / "a.tiff").write_bytes(b"x")
    (tmp_path / "slides.csv").write_text("slide_id,path,label,split\na,slides/a.tiff,1,train\n")
    (tmp_path / "annotations").mkdir()
    _png(tmp_path / "annotations" / "a.png", _mask())
    assert table.load_dataset(tmp_path).slides[0].annotation.name == "a.png"
    (tmp_path / "annotations" / "a.geojson").write_text(json.dumps({"type": "FeatureCollection",
                                                                    "features": []}))
    with pytest.raises(DatasetError, match=r"slide 'a' has 2 annotation files \(a.geojson, "
                                           r"a.png\); keep one"):
        table.load_dataset(tmp_path)


def test_camelyon16_outlines_survive_a_mask_round_trip(shared, tmp_path):
    """Real ASAP outlines -> mask PNG at 1/64 -> read back: the same tumour pixels."""
    with pytest.warns(UserWarning, match="repaired 3 self-intersecting"):
        ann = read_annotations(shared / "annotations" / "camelyon16-asap" / "tumor_009.xml")
    *_, maxx, maxy = ann.tumor.bounds
    dims = (int(maxx) + 100, int(maxy) + 100)
    ds = 64
    w, h = -(-dims[0] // ds), -(-dims[1] // ds)
    m = ann.rasterize(0, 0, w, h, ds)
    assert (m == POSITIVE).sum() > 100
    back = read_annotations(_png(tmp_path / "t9.png", m), slide_dimensions=dims)
    assert iou(back.rasterize(0, 0, w, h, ds), m) > 0.97


def test_a_png_written_here_says_what_its_values_mean(tmp_path):
    m = np.where(_mask() == POSITIVE, 255, 0).astype(np.uint8)
    path = tmp_path / "a.png"
    mask_format.write_png(path, m, {0: "negative", 255: "tumor"})
    ann = read_annotations(path, slide_dimensions=SLIDE)  # no setting needed
    assert ann.tumor.bounds == pytest.approx((160, 80, 400, 240), abs=1)
    chosen = AnnotationConfig(mask_values={0: "tumor", 255: "negative"})  # the user's word wins
    assert read_annotations(path, chosen, slide_dimensions=SLIDE).tumor.area > ann.tumor.area
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(mask_format.VALUES_KEY, '{"1": "cancer"}')
    Image.fromarray(m).save(tmp_path / "bad.png", pnginfo=info)
    with pytest.raises(AnnotationError, match="not a map of values to tumor"):
        read_annotations(tmp_path / "bad.png", slide_dimensions=SLIDE)


def test_palette_png_labels_are_its_indices(tmp_path):
    from PIL import Image

    img = Image.fromarray(_mask(), mode="L").convert("P")
    img.putpalette([0, 0, 0, 200, 0, 0] + [128, 128, 128] * 254)  # colours are not labels
    img.save(tmp_path / "p.png")
    ann = read_annotations(tmp_path / "p.png", slide_dimensions=SLIDE)
    assert ann.tumor.bounds == pytest.approx((160, 80, 400, 240), abs=1)


def test_a_config_read_back_from_its_dump_leaves_the_mask_map_unset(tmp_path):
    """Run folders and bundles store the whole config: the map must stay 'unset' there."""
    from mixsup.config import config_to_yaml, load_config

    dumped = tmp_path / "config.yaml"
    dumped.write_text(config_to_yaml(load_config("tiny")))
    cfg = load_config("tiny", [dumped]).annotations
    assert cfg.mask_values is None
    m = np.where(_mask() == POSITIVE, 255, 0).astype(np.uint8)
    with pytest.raises(AnnotationError, match="only 0 and 255"):
        read_annotations(_png(tmp_path / "a.png", m), cfg, slide_dimensions=SLIDE)
    mask_format.write_png(tmp_path / "b.png", m, {0: "negative", 255: "tumor"})
    assert read_annotations(tmp_path / "b.png", cfg, slide_dimensions=SLIDE).tumor.area > 0


def test_a_mask_off_its_slides_shape_by_more_than_a_pixel_is_refused(tmp_path):
    m = _mask()  # 125x100 for 1000x800
    assert read_annotations(_png(tmp_path / "ok.png", m[:99]), slide_dimensions=SLIDE)
    with pytest.raises(AnnotationError, match=r"\(125x98 px\) does not have its slide's shape"):
        read_annotations(_png(tmp_path / "short.png", m[:98]), slide_dimensions=SLIDE)


def test_tiff_masks_use_their_largest_2d_image(tmp_path):
    m = _mask()
    path = tmp_path / "thumb_first.tiff"
    with tifffile.TiffWriter(path) as tw:
        tw.write(m[::4, ::4].copy())  # a thumbnail first, its own series
        tw.write(m)
    assert read_annotations(path, slide_dimensions=SLIDE).tumor.bounds == pytest.approx(
        (160, 80, 400, 240), abs=1)
    stack = tmp_path / "stack.tiff"
    tifffile.imwrite(stack, np.stack([m, m, m, m]), photometric="minisblack")
    with pytest.raises(AnnotationError, match="axes '[A-Z]YX'"):
        read_annotations(stack, slide_dimensions=SLIDE)
    wide = tmp_path / "int32.tiff"
    tifffile.imwrite(wide, m.astype(np.int32))
    assert read_annotations(wide, slide_dimensions=SLIDE).tumor.area > 0


def test_other_pixel_types_and_too_large_pngs(tmp_path, monkeypatch):
    m = _mask()
    rgba = np.dstack([m, m, m, np.full_like(m, 255)])  # opaque alpha carries nothing
    assert read_annotations(_png(tmp_path / "rgba.png", rgba), slide_dimensions=SLIDE)
    wide = tmp_path / "16bit.png"
    assert cv2.imwrite(str(wide), m.astype(np.uint16) * 256)  # 0, 256, 65280
    cfg = AnnotationConfig(mask_values={0: "negative", 256: "tumor", 65280: "ignore"})
    assert read_annotations(wide, cfg, slide_dimensions=SLIDE).tumor.bounds == pytest.approx(
        (160, 80, 400, 240), abs=1)
    monkeypatch.setattr(mask_format, "MAX_PIXELS", 1000)
    with pytest.raises(AnnotationError, match="125x100 px, over 1,000 pixels"):
        read_annotations(tmp_path / "rgba.png", slide_dimensions=SLIDE)
