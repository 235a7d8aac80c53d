"""``mixsup experiment --launcher``: runs as submitit jobs (here on submitit's local executor,
which runs the same pickled jobs as Slurm would), gathered into the same tables, resumed."""

from __future__ import annotations

import builtins
import csv
import json

import pytest

from mixsup.cli import main
from mixsup.errors import MixsupError
from mixsup.experiment.cluster import Launcher, check_launcher
from tests.helpers import FAST

pytest.importorskip("submitit", reason="submitit is not installed (pip install -e .[dev])")


def _args(data, out, *extra):
    args = ["-q", "experiment", str(data), "--out", str(out), "--modes", "mixed,pixel",
            "--preset", "tiny", *extra]
    for item in [*FAST, "stage1.rounds=1"]:
        args += ["--set", item]
    return args


@pytest.mark.slow
def test_runs_as_jobs_gather_and_resume(shapes_data, tmp_path):
    out = tmp_path / "exp"
    assert main(_args(shapes_data, out, "--launcher", "submitit-local", "--cpus-per-run",
                      "1")) == 0
    with open(out / "runs.csv") as fh:
        runs = {r["mode"]: r for r in csv.DictReader(fh)}
    assert set(runs) == {"mixed", "pixel"}
    assert list((out / "jobs").glob("*_log.out"))  # submitit's own logs, one per job
    pixel_log = (out / "runs" / "pixel_seed0" / "train" / "log.jsonl").read_text()
    assert '"round": 0' not in pixel_log  # started after mixed: its round 0 was copied
    train = {m: out / "runs" / f"{m}_seed0" / "train" for m in runs}
    before = {m: (t / "log.jsonl").read_text() for m, t in train.items()}
    seconds = {m: json.loads((t / "wall_seconds.json").read_text()) for m, t in train.items()}
    assert main(_args(shapes_data, out, "--launcher", "submitit-local")) == 0
    for m, t in train.items():  # finished runs resumed, not trained again
        assert (t / "log.jsonl").read_text() == before[m]
        assert json.loads((t / "wall_seconds.json").read_text()) == seconds[m]


def test_slurm_needs_a_partition_before_any_work(shapes_data, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(_args(shapes_data, out, "--launcher", "slurm")) == 2
    assert "--partition" in capsys.readouterr().err
    assert not out.exists()


def test_a_missing_submitit_is_one_error(monkeypatch):
    real = builtins.__import__

    def no_submitit(name, *args, **kwargs):
        if name == "submitit":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    with pytest.raises(MixsupError, match="needs the submitit package"):
        check_launcher(Launcher("submitit-local"))
    check_launcher(Launcher())  # local processes need nothing


def test_waves_follow_the_chain_of_copied_rounds(tmp_path):
    """A pixel stage-2 variant copies the plain pixel run, which copies mixed's round 0."""
    from mixsup.config import load_config
    from mixsup.experiment.runs import Job, Variant, grid_waves

    cfg = load_config("tiny")
    runs = {n: tmp_path / n for n in ("mixed", "pixel", "pixel_s2", "mixed_s2")}
    grid = [Job(Variant("pixel s2", "pixel"), 0, cfg, runs["pixel_s2"],
                stage1_from=runs["pixel"], round0_from=runs["mixed_s2"]),
            Job(Variant("pixel", "pixel"), 0, cfg, runs["pixel"], round0_from=runs["mixed"]),
            Job(Variant("mixed s2", "mixed"), 0, cfg, runs["mixed_s2"],
                stage1_from=runs["mixed"]),
            Job(Variant("mixed", "mixed"), 0, cfg, runs["mixed"])]
    assert grid_waves(grid) == [[3], [1, 2], [0]]
