"""SIGKILL ``mixsup train`` at several points, resume, and end where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import FAST

# CPU runs with fixed seeds should agree closely; this is the tolerance we promise.
LOSS_TOL = 1e-3


def _train_cmd(data: Path, run: Path, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "mixsup", "-q", "train", str(data), "--out", str(run),
           "--preset", "tiny"]
    for item in FAST:
        cmd += ["--set", item]
    return [*cmd, "--resume"] if resume else cmd


def _env() -> dict[str, str]:
    """The uninterrupted run the resumed one is compared with ran in this process: the same
    thread count keeps float sums in the same order (1 vs 2 threads: 0.01 apart by round 2)."""
    return dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))


def _kill_when(cmd: list[str], ready, timeout: float = 300) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env())
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < timeout:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the run finished or timed out before reaching the kill point")


def _losses(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    return {"selected": summary["selected_round"],
            "theta1": [r["final_loss"] for r in summary["rounds"]],
            "theta2": [r["stage2_train_loss"] for r in summary["rounds"]]}


def _same_stage2(got: list, want: list) -> None:
    """θ2's losses per round; None where a round trained no θ2 (round 0 by default)."""
    assert [v is None for v in got] == [v is None for v in want]
    np.testing.assert_allclose([v for v in got if v is not None],
                               [v for v in want if v is not None], atol=LOSS_TOL)


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume(shapes_data, trained, tmp_path):
    run = tmp_path / "run"
    r = lambda *p: run.joinpath(*p)  # noqa: E731

    # 1. during the E-step after round 0 (model saved, some maps written, round unfinished)
    _kill_when(_train_cmd(shapes_data, run, False),
               lambda: r("round_0", "model.pt").is_file() and r("round_0", "maps").is_dir()
               and any(r("round_0", "maps").glob("*.zarr")))
    assert not r("round_0", "summary.json").exists()
    # 2. mid-way through the M-step of round 1 (one epoch checkpointed, the next running)
    _kill_when(_train_cmd(shapes_data, run, True),
               lambda: r("round_1", "train_last.pt").is_file())
    assert not r("round_1", "model.pt").exists()
    # 3. during stage 2 of round 1 (round 0 has none: selection is among rounds 1..N)
    _kill_when(_train_cmd(shapes_data, run, True),
               lambda: r("round_1", "stage2").is_dir()
               and not r("round_1", "stage2", "summary.json").exists())
    # 4. a crash between a tiling's arrays and its metadata: that slide must be redone
    victim = next(r("tiles").glob("*.json"))
    victim.unlink()
    (r("tiles") / ".slide_000.json.tmp-x").write_text("{partial")
    done = subprocess.run(_train_cmd(shapes_data, run, True), capture_output=True, text=True,
                          env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert victim.is_file() and not (r("tiles") / ".slide_000.json.tmp-x").exists()

    epochs = [json.loads(line) for line in r("log.jsonl").read_text().splitlines()]
    seen = [(e["event"], e["round"], e["epoch"]) for e in epochs if "epoch" in e]
    assert len(seen) == len(set(seen)), "an epoch was trained twice"

    got, want = _losses(run), _losses(trained.run_dir)
    assert got["selected"] == want["selected"]
    np.testing.assert_allclose(got["theta1"], want["theta1"], atol=LOSS_TOL)
    _same_stage2(got["theta2"], want["theta2"])


def test_same_seed_same_losses(shapes_data, trained, tmp_path):
    """Fixed seeds make CPU runs reproducible (the premise of the resume comparison)."""
    from mixsup.train.api import train
    from tests.helpers import fast_config

    again = train(shapes_data, tmp_path / "again", fast_config(), progress=False)
    a, b = _losses(again.run_dir), _losses(trained.run_dir)
    assert a["selected"] == b["selected"]
    np.testing.assert_allclose(a["theta1"], b["theta1"], atol=LOSS_TOL)
    _same_stage2(a["theta2"], b["theta2"])
