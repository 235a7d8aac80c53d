from __future__ import annotations

import json

import numpy as np
import pytest

from mixsup.labels.annotations import POSITIVE, read_annotations
from mixsup.labels.table import load_dataset
from mixsup.slides import open_slide


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
    truth = read_annotations(shapes_data / "truth" / f"{pos.slide_id}.geojson")
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
        truth = json.loads((out / "truth" / f"{rec.slide_id}.geojson").read_text())
        assert bool(truth["features"]) == (rec.label == 1)
        if rec.label == 1:
            area = read_annotations(out / "truth" / f"{rec.slide_id}.geojson").tumor.area
            assert 0 < area < 0.25 * 960 * 960  # small relative to the slide
    slide = open_slide(ds.slides[0].path)
    assert np.asarray(slide.read_region((0, 0), 0, (960, 960))).std() > 10
