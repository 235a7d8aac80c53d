"""An experiment's time to an answer, with the sharing of work between its runs off and on.

One fixed PCam mosaic (``mixsup synth --kind pcam``, seed 0, the development pool), then in
the same invocation ``mixsup experiment --modes mixed,pixel --seeds 0,1`` twice into fresh
folders: with ``--no-share`` (every run tiles its slides and trains its round 0 itself) and
with the default sharing (one tiling per experiment, pixel's round 0 copied from mixed's).
Prints each path's wall time per phase (summed over its runs' ``phases.json``), whether the
two paths' ``predictions.csv`` agree, and last ``ratio_experiment X`` (shared / not shared).

``--baseline-set KEY=VALUE`` applies a setting to the unshared path only, to time today's
preset against a candidate one (their predictions then differ, and the bench says by how
much).

    python benchmarks/bench_experiment.py [--slides 30] [--preset small] [--jobs 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mixsup.runtime.progress import read_phases

PHASES = ("tiling", "theta1", "e_step", "theta2", "validation", "predict", "evaluate")


def mixsup(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "mixsup", "-q", *args], check=True)


def phases(out: Path) -> dict[str, float]:
    """Seconds per phase over the experiment folder and every run in it."""
    total = dict.fromkeys(PHASES, 0.0)
    folders = [out, *sorted((out / "runs").iterdir())]
    folders += [run / "train" for run in folders[1:]]
    for folder in folders:
        for name, seconds in read_phases(folder).items():
            total[name] = total.get(name, 0.0) + seconds
    return total


def predictions(out: Path) -> dict[tuple[str, str], float]:
    """(run, slide) -> probability, over every run of an experiment folder."""
    got = {}
    for run in sorted((out / "runs").iterdir()):
        with open(run / "pred" / "predictions.csv") as fh:
            for row in csv.DictReader(fh):
                got[(run.name, row["slide_id"])] = float(row["probability"])
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/mixsup-bench-experiment"))
    ap.add_argument("--pcam", type=Path, default=Path(__file__).resolve().parents[2]
                    / "shared" / "data" / "pcam")
    ap.add_argument("--slides", type=int, default=30)
    ap.add_argument("--size", type=int, default=1536)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--jobs", default="1")
    ap.add_argument("--set", action="append", default=[], dest="settings",
                    help="a setting for both paths")
    ap.add_argument("--baseline-set", action="append", default=[],
                    help="a setting for the unshared path only (today's preset)")
    args = ap.parse_args()
    data = args.work / f"pcam{args.slides}"
    if not (data / "slides.csv").is_file():
        mixsup("synth", str(data), "--kind", "pcam", "--n-slides", str(args.slides), "--size",
               str(args.size), "--pcam", str(args.pcam), "--seed", "0", "--pcam-pool", "dev")
    common = ["experiment", str(data), "--modes", "mixed,pixel", "--seeds", args.seeds,
              "--preset", args.preset, "--jobs", args.jobs]
    for item in args.settings:
        common += ["--set", item]
    print(f"{args.slides}-slide PCam mosaic ({data}); preset {args.preset}; seeds "
          f"{args.seeds}; --jobs {args.jobs}; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)
    walls, outs = {}, {}
    for path, extra in (("not shared", ["--no-share", *(a for s in args.baseline_set
                                                          for a in ("--set", s))]),
                        ("shared", [])):
        out = args.work / path.replace(" ", "-")
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        mixsup(*common, "--out", str(out), *extra)
        walls[path], outs[path] = time.perf_counter() - start, out
        print(f"{path}: {walls[path]:.0f} s", flush=True)
    print(f"\n{'phase':<12}" + "".join(f"{p:>12}" for p in walls) + f"{'ratio':>8}")
    per = {p: phases(outs[p]) for p in walls}
    for name in per["not shared"]:
        a, b = per["not shared"][name], per["shared"][name]
        print(f"{name:<12}{a:>12.1f}{b:>12.1f}{(b / a if a else float('nan')):>8.2f}")
    print(f"{'wall':<12}{walls['not shared']:>12.1f}{walls['shared']:>12.1f}")
    a, b = predictions(outs["not shared"]), predictions(outs["shared"])
    if a.keys() != b.keys():
        print("predictions: the two paths scored different runs or slides")
    else:
        worst = max(abs(a[k] - b[k]) for k in a)
        print("predictions.csv: identical in every run" if worst == 0 else
              f"predictions.csv: largest difference {worst:.3g}")
    print(f"ratio_experiment {walls['shared'] / walls['not shared']:.3f}")


if __name__ == "__main__":
    main()
