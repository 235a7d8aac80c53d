"""A stage-2 variant reuses its mode's θ1 rounds: the same predictions as training them again,
and nothing reused from a run that differs in stage 1 or has not finished."""

from __future__ import annotations

import csv
from pathlib import Path

from mixsup.cli import main
from mixsup.config import load_config
from mixsup.config.run import create_run
from mixsup.runtime.progress import read_phases
from mixsup.train.reuse import seed_rounds, shares_stage1
from tests.helpers import FAST


def test_only_stage2_settings_may_differ():
    base = load_config("tiny")
    assert shares_stage1(base, load_config("tiny", overrides=["stage2.epochs=7"]))
    assert not shares_stage1(base, load_config("tiny", overrides=["stage1.lr=0.5"]))
    assert not shares_stage1(base, load_config("tiny", overrides=["seed=3"]))


def test_nothing_is_reused_from_an_unfinished_or_different_run(tmp_path):
    cfg = load_config("tiny")
    source = tmp_path / "src"
    create_run(source, cfg)
    (source / "round_0").mkdir()
    assert not seed_rounds(source, tmp_path / "new", cfg)  # no summary.json: not finished
    (source / "summary.json").write_text("{}")
    other = load_config("tiny", overrides=["stage1.lr=0.5"])
    assert not seed_rounds(source, tmp_path / "new", other)
    assert not (tmp_path / "new").exists()
    assert seed_rounds(source, tmp_path / "new", cfg)
    assert (tmp_path / "new" / "round_0").is_dir() and (tmp_path / "new" / "config.yaml").is_file()
    assert not seed_rounds(source, tmp_path / "new", cfg)  # a started run is left alone


def _predictions(path):
    with open(path) as fh:
        return [(r["slide_id"], r["probability"]) for r in csv.DictReader(fh)]


def test_shared_rounds_predict_the_same_as_training_them_again(shapes_data, tmp_path):
    """Mixed and pixel share round 0, and a stage-2 variant its mode's θ1 rounds: every run's
    predictions are those of the same grid with --no-share."""
    outs = {}
    for name, extra in (("shared", []), ("alone", ["--no-share"])):
        out = tmp_path / name
        args = ["-q", "experiment", str(shapes_data), "--out", str(out), "--modes",
                "mixed,pixel", "--preset", "tiny", "--ablate", "stage2-epochs=2", *extra]
        for item in [*FAST, "stage1.rounds=1"]:
            args += ["--set", item]
        assert main(args) == 0
        outs[name] = out / "runs"
    runs = sorted(p.name for p in outs["shared"].iterdir())
    assert len(runs) == 4
    for run in runs:
        assert _predictions(outs["shared"] / run / "pred" / "predictions.csv") == _predictions(
            outs["alone"] / run / "pred" / "predictions.csv"), run
    shared = outs["shared"]
    model = "round_0/model.pt"
    assert (shared / "pixel_seed0" / "train" / model).read_bytes() == (
        shared / "mixed_seed0" / "train" / model).read_bytes()

    def trained_round0(runs: Path) -> bool:
        return '"round": 0' in (runs / "pixel_seed0" / "train" / "log.jsonl").read_text()

    assert trained_round0(outs["alone"]) and not trained_round0(shared)  # copied, not trained
    variant = shared / "pixel_stage2-epochs2_seed0" / "train"
    assert (variant / "round_1" / "model.pt").read_bytes() == (
        shared / "pixel_seed0" / "train" / "round_1" / "model.pt").read_bytes()
    epochs = [line for line in (variant / "log.jsonl").read_text().splitlines()
              if '"stage2_epoch"' in line]
    assert len(epochs) == 2  # its own two stage-2 epochs, none of the base run's one
    # every slide tiled once per experiment: each run's tilings are the experiment's files
    tiles = next((shared.parent / "tiles").iterdir())
    stored = sorted(p.name for p in tiles.glob("*.npz"))
    assert stored and not list((outs["alone"].parent).glob("tiles"))
    for run in runs:
        for folder in ("train/tiles", "pred/tiles"):
            own = shared / run / folder
            assert {p.name for p in own.glob("*.npz")} <= set(stored), (run, folder)
            assert all((own / n).samefile(tiles / n) for n in stored if (own / n).exists())
    assert "tiling" in read_phases(shared.parent)
    phases = read_phases(shared / "mixed_seed0" / "train")
    assert {"theta1", "e_step", "theta2"} <= set(phases)
    assert "theta1" not in read_phases(variant)  # reused rounds did no θ1 work here
    assert {"predict", "evaluate"} <= set(read_phases(shared / "mixed_seed0"))


def test_round0_selection_is_a_stage1_setting():
    """Stage 1 runs round 0's E-step only where round selection may pick round 0."""
    assert not shares_stage1(load_config("tiny"),
                             load_config("tiny", overrides=["stage2.include_round0=true"]))
