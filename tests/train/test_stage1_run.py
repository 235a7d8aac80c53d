"""Stage 1 end to end on a tiny shapes dataset, including interruption and resume."""

from __future__ import annotations

import json

import pytest

from mixsup.errors import MixsupError
from mixsup.inference import stores as stores_mod
from mixsup.train import rounds as rounds_mod
from mixsup.train.api import train
from tests.helpers import fast_config


def _cfg(rounds: int = 2):
    return fast_config(rounds)


def _events(run):
    lines = (run / "log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_init_plus_two_rounds(shapes_data, trained):
    run, result = trained.run_dir, trained
    for r in range(3):
        assert (run / f"round_{r}" / "model.pt").is_file()
        assert (run / f"round_{r}" / "summary.json").is_file()
        assert list((run / f"round_{r}" / "maps").glob("*.zarr"))
    rounds = result.summary.rounds
    assert [r.round for r in rounds] == [0, 1, 2]
    assert rounds[0].pools.pseudo_positive == 0
    assert rounds[1].pools.fine == rounds[0].pools.fine > 0
    assert rounds[1].pools.hard_negative > 0
    epochs = [(e["round"], e["epoch"]) for e in _events(run) if e["event"] == "epoch"]
    assert epochs == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]
    assert result.summary.figures and all((run / f).is_file() for f in result.summary.figures)
    with pytest.raises(MixsupError, match="--resume"):
        train(shapes_data, run, _cfg(), progress=False)


def test_stage2_per_round_selection_and_bundle(trained):
    run, s = trained.run_dir, trained.summary
    curves = {r.round: r.stage2_train_curve for r in s.rounds
              if r.stage2_train_curve is not None}
    assert sorted(curves) == [1, 2]  # the paper selects among rounds 1..N
    assert s.selection.criterion == "train_curve"
    if len(s.selection.tied) == 1:
        assert s.selected_round == min(curves, key=lambda r: curves[r])
    else:
        assert s.selected_round in s.selection.tied
    bundle = json.loads((run / "bundle" / "bundle.json").read_text())
    assert bundle["selected_round"] == s.selected_round
    assert bundle["preprocessing"]["mpp"] == 1.0 and bundle["preprocessing"]["patch_size"] == 128
    assert bundle["mixsup_version"] and 0 <= bundle["operating_threshold"] <= 1
    val = json.loads((run / f"round_{s.selected_round}" / "stage2" /
                      "summary.json").read_text())["val"]
    assert val["scores"]  # the shapes fixture has a labelled val split
    assert set(val["labels"]) == set(val["scores"])


def test_predict_and_evaluate_end_to_end(shapes_data, trained, tmp_path):
    from mixsup.cli import main

    pred, report = tmp_path / "pred", tmp_path / "report"
    assert main(["-q", "predict", str(trained.run_dir), "--data", str(shapes_data),
                 "--split", "test", "--out", str(pred)]) == 0
    rows = (pred / "predictions.csv").read_text().splitlines()
    assert rows[0] == "slide_id,probability,prediction" and len(rows) == 1 + 1
    sid = rows[1].split(",")[0]
    for rel in (f"heatmaps/{sid}.png", f"regions/{sid}.geojson", f"probmaps/{sid}.zarr",
                "topk.csv", "predict.json"):
        assert (pred / rel).exists(), rel
    regions = json.loads((pred / "regions" / f"{sid}.geojson").read_text())
    assert sum("Top-K" in f["properties"]["name"] for f in regions["features"]) >= 1
    assert main(["evaluate", str(pred / "predictions.csv"), "--labels",
                 str(shapes_data / "slides.csv"), "--out", str(report)]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    for key in ("n_pos", "n_neg", "auc", "specificity_at_full_sensitivity",
                "threshold_at_full_sensitivity", "sensitivity", "specificity",
                "operating_threshold"):
        assert key in metrics
    assert (report / "roc.png").is_file() and (report / "report.md").is_file()
    # a second predict run reuses every finished slide and drops a killed run's partial store
    before = (pred / "slides" / f"{sid}.json").stat().st_mtime_ns
    (pred / "maps" / ".slide_x.zarr.tmp-abc" / "g.zarr").mkdir(parents=True)
    assert main(["-q", "predict", str(trained.run_dir), "--data", str(shapes_data),
                 "--split", "test", "--out", str(pred)]) == 0
    assert (pred / "slides" / f"{sid}.json").stat().st_mtime_ns == before
    assert not list((pred / "maps").glob(".*"))


class Crash(Exception):
    pass


def test_resume_mid_round_redoes_nothing(shapes_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real = rounds_mod.append_jsonl

    def crash_after_round1_epoch1(path, record):
        real(path, record)
        if record.get("event") == "epoch" and (record["round"], record["epoch"]) == (1, 1):
            raise Crash

    monkeypatch.setattr(rounds_mod, "append_jsonl", crash_after_round1_epoch1)
    with pytest.raises(Crash):
        train(shapes_data, run, _cfg(1), progress=False)
    monkeypatch.setattr(rounds_mod, "append_jsonl", real)
    model0 = (run / "round_0" / "model.pt").stat().st_mtime_ns
    maps0 = {p.name: p.stat().st_mtime_ns for p in (run / "round_0" / "maps").iterdir()}

    train(shapes_data, run, _cfg(1), resume=True, progress=False)
    epochs = [(e["round"], e["epoch"]) for e in _events(run) if e["event"] == "epoch"]
    assert epochs == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert (run / "round_0" / "model.pt").stat().st_mtime_ns == model0
    assert {p.name: p.stat().st_mtime_ns for p in (run / "round_0" / "maps").iterdir()} == maps0
    assert (run / "round_1" / "summary.json").is_file()
    assert (run / "bundle" / "bundle.json").is_file()


def test_resume_during_estep_keeps_model_and_finished_slides(shapes_data, tmp_path,
                                                             monkeypatch):
    run = tmp_path / "run"
    real = stores_mod.MapWriter
    calls = {"n": 0}

    class CrashOnThirdSlideOfRound1(real):
        def finish(self):
            if (run / "round_1" / "model.pt").is_file():
                calls["n"] += 1
                if calls["n"] == 3:
                    raise Crash
            return super().finish()

    monkeypatch.setattr(stores_mod, "MapWriter", CrashOnThirdSlideOfRound1)
    with pytest.raises(Crash):
        train(shapes_data, run, _cfg(1), progress=False)
    monkeypatch.setattr(stores_mod, "MapWriter", real)
    model1 = (run / "round_1" / "model.pt").stat().st_mtime_ns
    done = {p.name: p.stat().st_mtime_ns for p in (run / "round_1" / "maps").iterdir()
            if not p.name.startswith(".")}  # the crashed slide's store is a hidden temp dir
    assert len(done) == 2

    train(shapes_data, run, _cfg(1), resume=True, progress=False)
    assert (run / "round_1" / "model.pt").stat().st_mtime_ns == model1
    after = {p.name: p.stat().st_mtime_ns for p in (run / "round_1" / "maps").iterdir()}
    assert all(after[k] == v for k, v in done.items())
    assert not [k for k in after if k.startswith(".")]  # resume cleared the partial store
    epochs = [(e["round"], e["epoch"]) for e in _events(run) if e["event"] == "epoch"]
    assert epochs.count((1, 2)) == 1


def test_the_em_switches_train_end_to_end(shapes_data, tmp_path):
    """Confident pseudo-labels, a positive slide's top patches kept, and the averaged teacher:
    each switch reaches the M-step (unit tests pin their rules)."""
    from mixsup.config import load_config
    from tests.helpers import FAST

    cfg = load_config("tiny", overrides=[*FAST, "stage1.pseudo_labels=confident",
                                         "stage1.positive_keep_top=2", "stage1.teacher=average",
                                         "stage1.threshold=0.99"])
    result = train(shapes_data, tmp_path / "run", cfg, progress=False)
    rows = result.summary.rounds
    assert [r.round for r in rows] == [0, 1, 2]
    # with T = 0.99 hardly anything passes, yet every positive slide keeps its top 2
    assert all(r.pools.pseudo_positive >= 2 for r in rows[1:])
