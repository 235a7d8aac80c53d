"""Grouped cross-validation: the fold rule's properties, exactly, and one run end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mixsup.experiment.folds import fold_assignment, fold_split, pool_predictions
from mixsup.labels.table import SlideRecord


def _records() -> list[SlideRecord]:
    """40 labelled slides of 20 patients (2 each), 8 positives with pixel labels, and 2
    unlabelled slides."""
    out = []
    for i in range(40):
        label = int(i < 20)
        out.append(SlideRecord(f"s{i:02d}", Path(f"/x/s{i:02d}.tiff"), label, "train",
                               annotation=Path(f"/a/s{i:02d}.geojson") if i < 8 else None,
                               patient=f"p{i // 2:02d}"))
    out += [SlideRecord(f"u{i}", Path(f"/x/u{i}.tiff"), None, "train") for i in range(2)]
    return out


def test_every_labelled_slide_is_tested_once_and_patients_stay_together():
    records = _records()
    folds = fold_assignment(records, 4, seed=0)
    assert set(folds) == {r.slide_id for r in records if r.label is not None}
    assert set(folds.values()) == {0, 1, 2, 3}
    by_patient: dict[str, set[int]] = {}
    for r in records:
        if r.slide_id in folds:
            by_patient.setdefault(r.patient or "", set()).add(folds[r.slide_id])
    assert all(len(f) == 1 for f in by_patient.values())
    for f in range(4):
        mine = [r for r in records if folds.get(r.slide_id) == f]
        assert {r.label for r in mine} == {0, 1}
        assert sum(r.annotation is not None for r in mine) == 2  # 8 annotated over 4 folds
    assert fold_assignment(records, 4, seed=0) == folds  # the same every time


def test_too_few_slides_or_folds_are_refused():
    records = _records()
    with pytest.raises(ValueError, match="at least 3"):
        fold_assignment(records, 2)
    with pytest.raises(ValueError, match="label 1"):
        fold_assignment([r for r in records if r.label == 0 or r.slide_id == "s00"], 3)


def test_fold_f_tests_on_f_validates_on_the_next_and_trains_on_the_rest():
    assert [fold_split(1, f, 4) for f in (0, 1, 2, 3, None)] == [
        "train", "test", "val", "train", "train"]
    assert fold_split(3, 0, 4) == "val"


def test_pooled_predictions_hold_every_fold_once(tmp_path):
    for f, ids in enumerate((["a", "b"], ["c"])):
        d = tmp_path / f"f{f}"
        d.mkdir()
        (d / "predictions.csv").write_text(
            "slide_id,probability,prediction\n" + "".join(f"{i},0.{f}5,{f}\n" for i in ids))
        (d / "topk.csv").write_text("slide_id,max_pixel_prob\n" + "".join(
            f"{i},0.{f}\n" for i in ids))
    out = pool_predictions([tmp_path / "f0", tmp_path / "f1"], tmp_path / "pooled")
    with open(out / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["slide_id"], r["probability"], r["prediction"]) for r in rows] == [
        ("a", "0.05", "0"), ("b", "0.05", "0"), ("c", "0.15", "1")]
    assert (out / "topk.csv").read_text().count("\n") == 4


def test_a_cross_validated_experiment_pools_every_labelled_slide(tmp_path):
    from mixsup.cli import main
    from tests.helpers import FAST

    data = tmp_path / "d"
    assert main(["-q", "synth", str(data), "--n-slides", "12", "--size", "512",
                 "--split-shares", "1,0,0", "--seed", "1"]) == 0
    args = ["-q", "experiment", str(data), "--out", str(tmp_path / "e"), "--modes", "pixel",
            "--folds", "3", "--preset", "tiny"]
    for item in [*FAST, "stage1.rounds=1"]:
        args += ["--set", item]
    assert main(args) == 0
    with open(tmp_path / "e" / "cv" / "pred" / "pixel_seed0" / "predictions.csv") as fh:
        ids = sorted(r["slide_id"] for r in csv.DictReader(fh))
    assert ids == [f"slide_{i:03d}" for i in range(12)]
    assert "pooled over 3 grouped folds" in (tmp_path / "e" / "cv" / "results.md").read_text()
    with open(tmp_path / "e" / "fold-data" / "fold0" / "slides.csv") as fh:
        splits = [r["split"] for r in csv.DictReader(fh)]
    assert splits.count("test") == splits.count("val") == 4


def test_folds_take_three_or_more(tmp_path, capsys):
    from mixsup.cli import main

    with pytest.raises(SystemExit):
        main(["experiment", str(tmp_path), "--out", str(tmp_path / "e"), "--folds", "2"])
    assert "from 3 to 50" in capsys.readouterr().err


def _small(n_pos: int, n_annotated: int, n_neg: int) -> list[SlideRecord]:
    return [SlideRecord(f"s{i:02d}", Path(f"/x/s{i:02d}.tiff"), int(i < n_pos), "train",
                        annotation=Path("/a.geojson") if i < n_annotated else None)
            for i in range(n_pos + n_neg)]


def test_every_fold_tests_both_labels_and_trains_on_pixel_labels_or_the_split_is_refused():
    """The greedy split can leave a fold without a positive (3 positives, 2 annotated, 9
    negatives, k = 3 at random state 0): it is redrawn, or refused when no draw works."""
    for n_pos, n_ann, n_neg, k in ((4, 3, 9, 3), (5, 3, 30, 5), (6, 3, 12, 3)):
        records = _small(n_pos, n_ann, n_neg)
        folds = fold_assignment(records, k)
        for f in range(k):
            assert {r.label for r in records if folds[r.slide_id] == f} == {0, 1}
            train = [r for r in records if fold_split(f, folds[r.slide_id], k) == "train"]
            assert any(r.annotation is not None for r in train)
    with pytest.raises(ValueError, match="no split"):
        fold_assignment(_small(4, 2, 9), 3)  # k = 3 trains each fold on one: 3 annotated needed


def test_a_folder_cross_validated_otherwise_is_refused(tmp_path):
    from mixsup.errors import MixsupError
    from mixsup.experiment.folds import write_folds
    from mixsup.labels.table import Dataset

    data = Dataset(tmp_path, tuple(_records()))
    write_folds(data, tmp_path / "fd", 4)
    write_folds(data, tmp_path / "fd", 4)  # the same plan: resumes
    with pytest.raises(MixsupError, match="other folds"):
        write_folds(data, tmp_path / "fd", 5)


def test_folds_into_an_output_that_cannot_be_a_folder_is_one_error(tmp_path, capsys):
    from mixsup.cli import main

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as exit_:  # refused while the arguments are read
        main(["experiment", str(tmp_path), "--out", str(a_file), "--folds", "3"])
    assert exit_.value.code == 2
    assert "a file, not a folder" in capsys.readouterr().err and a_file.read_text() == "x"
