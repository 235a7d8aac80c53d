"""`mixsup experiment --jobs 2` (two runs at once, each with half the cores) against `--jobs 1`
(one run after the other, each with every core), on the same tiny-preset grid.

Each repetition times both, alternating which goes first; prints the wall times and the range
of the ratio over repetitions. Usage:

    python benchmarks/bench_jobs.py [--reps 2] [--modes pixel] [--seeds 0,1] [--short]

``--short`` uses the test suite's schedule (a few steps per stage) instead of the preset's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cached_data import shapes_dataset

from mixsup.runtime.parallel_runs import cpu_cores

SHORT = ["stage1.epochs_init=2", "stage1.steps_per_epoch=3", "stage1.batch_size=10",
         "runtime.num_workers=0", "tiling.overlap=0", "stage2.epochs=1",
         "stage2.steps_per_epoch=2", "stage2.top_k=2", "stage2.slides_per_batch=2"]


def experiment(data: Path, jobs: int, args: argparse.Namespace) -> float:
    cores = cpu_cores()
    sets = [*(SHORT if args.short else []),
            *([f"runtime.threads={cores}"] if jobs == 1 else [])]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "mixsup", "-q", "experiment", str(data), "--out",
               str(Path(tmp) / "exp"), "--preset", "tiny", "--modes", args.modes, "--seeds",
               args.seeds, "--jobs", str(jobs)]
        for item in sets:
            cmd += ["--set", item]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS=str(cores)))
        wall = time.perf_counter() - start
    print(f"--jobs {jobs}: {wall:.1f} s", flush=True)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--modes", default="pixel")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--short", action="store_true")
    args = ap.parse_args()
    data = shapes_dataset("jobs-20-1280", 20, 1280, seed=0)
    print(f"{cpu_cores()} cores; modes {args.modes}, seeds {args.seeds}", flush=True)
    ratios = []
    for rep in range(args.reps):
        order = (1, 2) if rep % 2 == 0 else (2, 1)
        walls = {jobs: experiment(data, jobs, args) for jobs in order}
        ratios.append(walls[2] / walls[1])
    print(f"ratio_jobs2_over_jobs1 {min(ratios):.2f}-{max(ratios):.2f} over {len(ratios)} reps "
          "(< 1: --jobs 2 finishes sooner)")


if __name__ == "__main__":
    main()
