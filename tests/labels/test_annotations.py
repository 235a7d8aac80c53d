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
