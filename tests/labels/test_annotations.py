"""read_annotations: class names to roles, and the checks on every outline."""

from __future__ import annotations

import json

import pytest

from mixsup.config import AnnotationConfig
from mixsup.errors import AnnotationError
from mixsup.labels.annotations import read_annotations
from tests.labels.samples import SQUARE, fc, feat


def test_unknown_class_is_an_error_naming_it(shared):
    path = shared / "annotations" / "tcga-prad" / "TCGA-EJ-5519-01Z-00-DX1.xml"
    with pytest.raises(AnnotationError, match="'CaP'.*class_map"):
        read_annotations(path)


def test_self_intersecting_polygon_is_repaired_or_rejected(tmp_path):
    bowtie = [[0, 0], [40, 40], [40, 0], [0, 40], [0, 0]]
    p = tmp_path / "bow.geojson"
    p.write_text(json.dumps(fc(feat(bowtie, "Tumor"))))
    with pytest.warns(UserWarning, match="repaired 1 self-intersecting"):
        ann = read_annotations(p)
    assert ann.tumor.is_valid and ann.tumor.area == pytest.approx(800)
    with pytest.raises(AnnotationError, match="Self-intersection"):
        read_annotations(p, AnnotationConfig(repair_invalid=False))


def test_empty_polygon_and_outside_slide_are_errors(tmp_path):
    p = tmp_path / "empty.geojson"
    p.write_text(json.dumps(fc(feat([[0, 0], [10, 0], [0, 0]], "Tumor"))))
    with pytest.raises(AnnotationError, match="empty or degenerate|point"):
        read_annotations(p)
    p = tmp_path / "far.geojson"
    p.write_text(json.dumps(fc(feat([[x + 5000, y] for x, y in SQUARE], "Tumor"))))
    with pytest.raises(AnnotationError, match="outside the slide"):
        read_annotations(p, slide_dimensions=(1000, 1000))


def test_pixel_labels_that_contradict_the_slide_label_are_errors(tmp_path):
    tumour = tmp_path / "t.geojson"
    tumour.write_text(json.dumps(fc(feat(SQUARE, "Tumor"))))
    roi_only = tmp_path / "r.geojson"
    roi_only.write_text(json.dumps(fc(feat([[0, 0], [80, 0], [80, 80], [0, 80], [0, 0]],
                                           "ROI"))))
    nothing = tmp_path / "n.geojson"
    nothing.write_text(json.dumps(fc()))
    with pytest.raises(AnnotationError, match="labelled negative.*mark tumour"):
        read_annotations(tumour, label=0)
    with pytest.raises(AnnotationError, match="labelled positive.*every pixel would be negative"):
        read_annotations(nothing, label=1)
    for path, label in ((tumour, 1), (tumour, None), (roi_only, 1), (roi_only, 0),
                        (nothing, 0), (nothing, None)):
        read_annotations(path, label=label)  # consistent: no error


def test_training_drops_pixel_labels_that_contradict_the_slide_label(shapes_data, tmp_path,
                                                                    capsys):
    import shutil

    from mixsup.cli import main
    from mixsup.config import load_config
    from mixsup.labels.table import load_dataset
    from mixsup.train.preflight import read_train_annotations

    data = tmp_path / "data"
    shutil.copytree(shapes_data, data, ignore=shutil.ignore_patterns("tiles"))
    ds = load_dataset(data)
    pos = next(r for r in ds.slides if r.annotation is not None and r.label == 1)
    neg = next(r for r in ds.slides if r.label == 0)
    shutil.copy(pos.annotation, data / "annotations" / f"{neg.slide_id}.geojson")
    recs = [r for r in load_dataset(data).slides if r.annotation is not None]
    with pytest.raises(AnnotationError, match="labelled negative"):
        read_train_annotations(recs, load_config("tiny"), strict=True)
    checked = read_train_annotations(recs, load_config("tiny"), strict=False)
    assert neg.slide_id in checked.rejected and neg.slide_id not in checked.annotations
    assert pos.slide_id in checked.annotations
    assert main(["validate", str(data)]) == 2
    assert "labelled negative" in capsys.readouterr().err
