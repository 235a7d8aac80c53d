"""A stage-2 variant reuses its mode's θ1 rounds: the same predictions as training them again,
and nothing reused from a run that differs in stage 1 or has not finished."""

from __future__ import annotations

import csv

from mixsup.cli import main
from mixsup.config import load_config
from mixsup.run import create_run
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


def test_a_stage2_variant_predicts_the_same_with_and_without_reuse(shapes_data, tmp_path):
    outs = {}
    for name, extra in (("shared", []), ("alone", ["--no-share"])):
        out = tmp_path / name
        args = ["-q", "experiment", str(shapes_data), "--out", str(out), "--modes", "pixel",
                "--preset", "tiny", "--ablate", "stage2-epochs=2", *extra]
        for item in [*FAST, "stage1.rounds=1"]:
            args += ["--set", item]
        assert main(args) == 0
        outs[name] = out / "runs"
    variant = "pixel_stage2-epochs2_seed0"
    shared = outs["shared"] / variant / "train"
    base = outs["shared"] / "pixel_seed0" / "train"
    assert (shared / "round_1" / "model.pt").read_bytes() == (
        base / "round_1" / "model.pt").read_bytes()
    assert _predictions(outs["shared"] / variant / "pred" / "predictions.csv") == _predictions(
        outs["alone"] / variant / "pred" / "predictions.csv")
    epochs = [line for line in (shared / "log.jsonl").read_text().splitlines()
              if '"stage2_epoch"' in line]
    assert len(epochs) == 2  # its own two stage-2 epochs, none of the base run's one


def test_round0_selection_is_a_stage1_setting():
    """Stage 1 runs round 0's E-step only where round selection may pick round 0."""
    assert not shares_stage1(load_config("tiny"),
                             load_config("tiny", overrides=["stage2.include_round0=true"]))
