from __future__ import annotations

import numpy as np
import pytest

from mixsup.camelyon.classifier import train_node_forest
from mixsup.camelyon.features import Heatmap, heatmap_features, rule_node_class


def _disc(size: int, r: float, value: float = 0.95) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= r * r, value, 0.02)


def test_features_are_physical():
    prob = _disc(200, 20)  # a disc of diameter 40 px
    hm = Heatmap(prob, np.ones_like(prob, bool), pixel_um=8.0)  # 320 µm across
    f = heatmap_features(hm)
    assert f["n_regions_t50"] == 1 and f["n_regions_t90"] == 1
    assert f["largest_major_axis_um_t50"] == pytest.approx(320, rel=0.05)
    assert f["largest_area_um2_t50"] == pytest.approx(np.pi * 160**2, rel=0.05)
    assert f["max_prob"] == pytest.approx(0.95)
    # the same slide at a finer heatmap resolution gives the same physical sizes
    fine = heatmap_features(Heatmap(_disc(400, 40), np.ones((400, 400), bool), pixel_um=4.0))
    assert fine["largest_major_axis_um_t50"] == pytest.approx(320, rel=0.05)


@pytest.mark.parametrize("diameter_um,expected", [(0, "negative"), (120, "itc"),
                                                  (800, "micro"), (3000, "macro")])
def test_rule_classifier(diameter_um, expected):
    size = 500
    r = diameter_um / 2 / 8.0
    prob = _disc(size, r) if diameter_um else np.zeros((size, size))
    f = heatmap_features(Heatmap(prob, np.ones((size, size), bool), 8.0))
    assert rule_node_class(f) == expected


def test_forest_cross_validation_and_fold_average():
    rng = np.random.default_rng(0)
    rows, classes = [], []
    for c, d in (("negative", 0), ("itc", 100), ("micro", 900), ("macro", 3000)):
        for _ in range(6):
            r = d * rng.uniform(0.9, 1.1) / 2 / 8.0
            prob = _disc(500, r) if d else np.zeros((500, 500))
            rows.append(heatmap_features(Heatmap(prob, np.ones((500, 500), bool), 8.0)))
            classes.append(c)
    forest = train_node_forest(rows, classes, folds=3, n_estimators=50)
    assert len(forest.models) == 3 and len(forest.cv_predictions) == len(rows)
    assert np.mean([a == b for a, b in zip(forest.cv_predictions, classes, strict=True)]) > 0.9
    p = forest.predict_proba(rows[:2])
    assert p.shape == (2, 4) and np.allclose(p.sum(axis=1), 1)


def test_patients_and_nodes_from_ids_or_column():
    from pathlib import Path

    from mixsup.camelyon.workflow import _patient_nodes
    from mixsup.labels.table import SlideRecord

    recs = [SlideRecord("patient_007_node_3", Path("a"), 1, "test"),
            SlideRecord("s1", Path("b"), 0, "test", patient="p9"),
            SlideRecord("s2", Path("c"), 0, "test", patient="p9")]
    assert _patient_nodes(recs) == [("patient_007", 3), ("p9", 0), ("p9", 1)]


def test_patient_plan_has_physical_lesion_sizes():
    from mixsup.synth.layout import NODE_DIAMETER_UM, plan_patients

    layouts = plan_patients(6, 4096, 0.972, seed=1)
    assert len(layouts) == 30 and {lay.patient for lay in layouts} == {
        f"patient_{i:03d}" for i in range(6)}
    for lay in layouts:
        if lay.node_class == "negative":
            assert lay.tumor.is_empty and lay.label == 0
            continue
        minx, miny, maxx, maxy = lay.tumor.bounds
        extent_um = max(maxx - minx, maxy - miny) * 0.972
        lo, hi = NODE_DIAMETER_UM[lay.node_class]
        assert 0.6 * lo <= extent_um <= 1.4 * hi, (lay.node_class, extent_um)


def test_patient_dataset_writes_camelyon17_stage_labels(tmp_path):
    from mixsup.labels.stages import read_stage_csv, stages_from_nodes
    from mixsup.labels.table import load_dataset
    from mixsup.synth.layout import plan_patients, write_dataset
    from mixsup.synth.shapes import shapes_renderer

    layouts = plan_patients(2, 512, 8.0, seed=2)
    write_dataset(tmp_path, layouts, 8.0, shapes_renderer, progress=False)
    patients, nodes = read_stage_csv(tmp_path / "stage_labels.csv")
    assert set(patients) == {"patient_000", "patient_001"}
    assert stages_from_nodes(nodes) == patients
    ds = load_dataset(tmp_path)
    assert {s.node_class for s in ds.slides} <= {"negative", "itc", "micro", "macro"}
    assert all(s.patient for s in ds.slides)
