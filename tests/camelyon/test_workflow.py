"""``stage train|predict`` end to end on a trained run: which slides the forest learns from,
the in-sample vs held-out report, and checks that come before any output."""

from __future__ import annotations

import json
import shutil

import pytest

from mixsup.cli import main
from mixsup.labels.table import load_dataset, write_slides_csv


def _table(data) -> list[dict[str, object]]:
    return [{"slide_id": r.slide_id, "path": str(r.path), "label": r.label, "split": r.split,
             "patient": r.patient, "node_class": r.node_class}
            for r in load_dataset(data).slides]


def _with_nodes(rows: list[dict[str, object]], prefix: str) -> list[dict[str, object]]:
    return [r | {"slide_id": f"{prefix}{r['slide_id']}", "patient": f"{prefix}p{i // 3}",
                 "node_class": "macro" if r["label"] == 1 else "negative"}
            for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def staging(trained, shapes_data, tmp_path_factory):
    """A run whose θ1 trained on the shapes train slides, and a dataset adding 4 other train
    slides (another shapes seed) that θ1 never saw."""
    from mixsup.synth.shapes import make_shapes

    root = tmp_path_factory.mktemp("staging")
    run = root / "run"
    shutil.copytree(trained.run_dir / "bundle", run / "bundle")
    other = make_shapes(root / "other", n_slides=6, size=768, seed=2, progress=False)
    data = root / "data"
    data.mkdir()
    rows = _with_nodes(_table(shapes_data), "") + [
        r for r in _with_nodes(_table(other), "held_") if r["split"] == "train"]
    write_slides_csv(data / "slides.csv", rows)
    return run, data


def _stage_train(run, data, *extra: str) -> int:
    return main(["-q", "stage", "train", str(run), "--data", str(data), "--folds", "2", *extra])


def test_bundle_lists_the_slides_theta1_learnt_from(trained, shapes_data):
    meta = json.loads((trained.run_dir / "bundle" / "bundle.json").read_text())
    train = sorted(r.slide_id for r in load_dataset(shapes_data).split("train"))
    assert meta["theta1_slides"] == train


def test_forest_learns_from_held_out_slides_and_reports_both(staging, capsys):
    run, data = staging
    assert _stage_train(run, data) == 0
    out = capsys.readouterr().out
    report = json.loads((run / "stage" / "train.json").read_text())
    assert report["features_from"] == "heldout" and report["slides"] == 4
    assert report["held_out"]["set"] == "heldout" and report["held_out"]["slides"] == 4
    assert report["in_sample"]["slides"] == 4
    for key in ("cv_accuracy", "rule_accuracy"):
        assert 0 <= report["in_sample"][key] <= 1 and 0 <= report["held_out"][key] <= 1
    features = (run / "stage" / "features_heldout.csv").read_text()
    assert features.count("held_slide_") == 4 and "\nslide_00" not in features
    assert "in-sample" in out and "held-out" in out

    assert _stage_train(run, data, "--features-from", "train") == 0
    report = json.loads((run / "stage" / "train.json").read_text())
    assert report["features_from"] == "train" and report["slides"] == 8
    assert report["held_out"]["set"] == "heldout" and report["in_sample"]["slides"] == 4


def test_old_bundles_count_every_train_slide_as_in_sample(staging, tmp_path):
    from mixsup.camelyon.workflow import feature_sets

    run, data = staging
    old = tmp_path / "run" / "bundle"
    shutil.copytree(run / "bundle", old)
    meta = json.loads((old / "bundle.json").read_text())
    del meta["theta1_slides"]
    (old / "bundle.json").write_text(json.dumps(meta))
    sets = feature_sets(old.parent, load_dataset(data))
    assert not sets["heldout"] and len(sets["in_sample"]) == 8


@pytest.mark.parametrize("edit,extra,needle", [
    (lambda rows: rows[0].update(node_class="huge"), [], "node_class 'huge' is not one of"),
    (lambda rows: rows.append(dict(rows[0])), [], "appears 2 times"),
    (None, ["--features-from", "val"], "only 1 val slide(s) carry a node_class"),
])
def test_stage_train_checks_before_writing(staging, tmp_path, capsys, edit, extra, needle):
    run, data = staging
    bad = tmp_path / "data"
    bad.mkdir()
    rows = _table(data)
    if edit:
        edit(rows)
    write_slides_csv(bad / "slides.csv", rows)
    fresh = tmp_path / "run"
    shutil.copytree(run / "bundle", fresh / "bundle")
    assert _stage_train(fresh, bad, *extra) == 2
    assert needle in capsys.readouterr().err
    assert not (fresh / "stage").exists()


def test_stage_predict_checks_before_writing_then_runs(staging, tmp_path, capsys):
    run, data = staging
    if not (run / "stage" / "node_forest.joblib").is_file():
        assert _stage_train(run, data) == 0
    rows = _table(data)
    bad = tmp_path / "bad"
    bad.mkdir()
    write_slides_csv(bad / "slides.csv", [{**r, "patient": None, "slide_id": f"s{i}"}
                                          for i, r in enumerate(rows)])
    out = tmp_path / "out"
    args = ["-q", "stage", "predict", str(run), "--data", str(bad), "--out", str(out)]
    assert main(args) == 2
    assert "names no patient" in capsys.readouterr().err
    assert not out.exists()
    args[5] = str(data)
    assert main(args) == 0
    assert (out / "submission.csv").is_file()
