from __future__ import annotations

import json

import numpy as np
import pytest

from mixsup.labels.annotations import read_annotations
from mixsup.labels.regions import POSITIVE
from mixsup.labels.table import load_dataset
from mixsup.slides import open_slide
from mixsup.synth.layout import answer_key


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_shapes_slides_are_pyramidal_tiffs_with_mpp(shapes_data, backend):
    with open_slide(shapes_data / "slides" / "slide_000.tiff", backend=backend) as slide:
        assert slide.mpp == pytest.approx(1.0)
        assert slide.dimensions == (768, 768)
        assert slide.level_count >= 1


def test_shapes_dataset_is_consistent(shapes_data):
    ds = load_dataset(shapes_data)
    assert len(ds) == 6
    assert {s.label for s in ds.split("train")} == {0, 1}
    for rec in ds.slides:
        if rec.annotation is not None:
            assert rec.split == "train" and rec.center == "A"
            assert read_annotations(rec.annotation).has_roi


def test_tumour_pixels_look_different(shapes_data):
    ds = load_dataset(shapes_data)
    pos = next(s for s in ds.slides if s.label == 1)
    assert not (shapes_data / "truth").exists()  # the answer key lies outside the dataset
    truth = read_annotations(answer_key(shapes_data) / f"{pos.slide_id}.geojson")
    slide = open_slide(pos.path)
    img = slide.read_region((0, 0), 0, slide.dimensions)
    mask = truth.rasterize(0, 0, *slide.dimensions)
    tumour = img[mask == POSITIVE].mean(axis=0)
    assert tumour[1] < 160  # dark purple nuclei-rich tissue, not pink stroma or glass


def test_pcam_mosaic(shared, tmp_path):
    from mixsup.synth.pcam import make_pcam

    out = make_pcam(tmp_path / "pcam", shared / "pcam", n_slides=6, size=960, seed=3,
                    annotated_fraction=1.0, splits=(0.67, 0.0, 0.33), progress=False)
    ds = load_dataset(out)
    assert len(ds) == 6 and {s.center for s in ds.slides} == {"A", "B"}
    annotated = [s for s in ds.slides if s.annotation is not None]
    assert annotated and all(s.center == "A" for s in annotated)
    with open_slide(ds.slides[0].path) as slide:
        assert slide.mpp == pytest.approx(0.972)
    for rec in ds.slides:
        truth = json.loads((answer_key(out) / f"{rec.slide_id}.geojson").read_text())
        assert bool(truth["features"]) == (rec.label == 1)
        if rec.label == 1:
            area = read_annotations(answer_key(out) / f"{rec.slide_id}.geojson").tumor.area
            assert 0 < area < 0.25 * 960 * 960  # small relative to the slide
    slide = open_slide(ds.slides[0].path)
    assert np.asarray(slide.read_region((0, 0), 0, (960, 960))).std() > 10


def test_pcam_val_and_test_slides_share_no_source_patch():
    """Every source patch has its own grey value, so a slide's values name its patches."""
    from mixsup.synth.layout import plan_slides
    from mixsup.synth.pcam import GLASS, PatchBank, pcam_renderer, slide_banks

    def patches(first: int, n: int) -> np.ndarray:
        values = np.arange(first, first + n, dtype=np.uint8)
        return np.repeat(values, 8 * 8 * 3).reshape(n, 8, 8, 3)

    train, valid = PatchBank(patches(1, 20), patches(21, 20)), PatchBank(patches(41, 20),
                                                                         patches(61, 20))
    banks = slide_banks({"train": train, "valid": valid})
    assert banks["train"] is train
    layouts = plan_slides(12, 160, 160, seed=0, splits=(0.34, 0.33, 0.33), centers=("A",))
    used: dict[str, set[int]] = {}
    render = pcam_renderer(banks)
    for lay in layouts:
        img = render(lay)(0, 0, lay.width, lay.height, 1.0)
        used.setdefault(lay.split, set()).update(set(np.unique(img[..., 0]).tolist())
                                                 - {int(GLASS[0])})
    assert used["train"] and used["train"] <= set(range(1, 41))
    assert used["val"] and used["test"] and not used["val"] & used["test"]
    assert used["val"] | used["test"] <= set(range(41, 81))


def test_synth_cli_zlib_tiles_are_lossless_and_readable(tmp_path):
    """``--compression zlib`` (no imagecodecs needed) writes deflate tiles OpenSlide reads."""
    import tifffile

    from mixsup.cli import main

    assert main(["-q", "synth", str(tmp_path / "d"), "--n-slides", "2", "--size", "512",
                 "--compression", "zlib"]) == 0
    path = next((tmp_path / "d" / "slides").glob("*.tiff"))
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        full = tif.pages[0].asarray()
    with open_slide(path, "openslide") as slide:
        region = np.asarray(slide.read_region((0, 0), 0, (64, 64)))[..., :3]
    assert np.array_equal(region, full[:64, :64, :3])


def test_pcam_dev_and_sealed_pools_split_valid_and_share_no_patch(shared, tmp_path):
    """The two pools of PCam valid are disjoint, cover it, and leave PCam train alone."""
    import shutil

    from mixsup.synth.pcam import load_banks

    root = tmp_path / "pcam"
    root.mkdir()
    rows = (shared / "pcam" / "labels.csv").read_text().splitlines()
    keep = [rows[0]]
    for split in ("train", "valid"):
        for label in ("0", "1"):
            keep += [r for r in rows[1:] if r.startswith(f"{split},{label},")][:12]
    header = rows[0].split(",")
    for row in keep[1:]:
        rel = row.split(",")[header.index("path")]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / "pcam" / rel, root / rel)
    (root / "labels.csv").write_text("\n".join(keep) + "\n")

    def rows_of(bank):
        return {arr.tobytes() for arr in (*bank.normal, *bank.tumor)}

    every, dev, sealed = (load_banks(root, pool) for pool in ("all", "dev", "sealed"))
    assert rows_of(dev["train"]) == rows_of(sealed["train"]) == rows_of(every["train"])
    assert rows_of(dev["valid"]) and rows_of(sealed["valid"])
    assert not rows_of(dev["valid"]) & rows_of(sealed["valid"])
    assert rows_of(dev["valid"]) | rows_of(sealed["valid"]) == rows_of(every["valid"])
    with pytest.raises(ValueError):
        load_banks(root, "test")


def test_sealed_mosaic_without_val_slides_draws_tests_from_the_whole_pool():
    from mixsup.synth.pcam import PatchBank, slide_banks

    n = np.zeros((4, 8, 8, 3), np.uint8)
    valid = PatchBank(n, n + 1)
    assert slide_banks({"train": valid, "valid": valid}, whole_test=True)["test"] is valid
    assert len(slide_banks({"train": valid, "valid": valid})["test"].normal) == 2
