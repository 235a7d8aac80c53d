"""Per-center paired differences of an experiment's runs, with the interval for a new draw of
runs (``mixsup.evaluate.paired``), for comparisons the experiment reports overall only.

    python tools/per_center_paired.py EXP DATA/slides.csv "mixed stain=macenko" mixed

prints one Markdown row per center (and all slides) and metric: mean over seeds of a − b and
its 95% interval with seeds and test slides redrawn.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from mixsup.evaluate.paired import METRICS, paired_difference
from mixsup.experiment.runs import slug


def scores(exp: Path, variant: str, seed: int) -> dict[str, float]:
    path = exp / "runs" / f"{slug(variant)}_seed{seed}" / "pred" / "predictions.csv"
    return {r["slide_id"]: float(r["probability"]) for r in csv.DictReader(path.open())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("exp", type=Path)
    p.add_argument("slides_csv", type=Path)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--seeds", default="0,1,2,3,4")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    test = {r["slide_id"]: r for r in csv.DictReader(args.slides_csv.open())
            if r["split"] == "test"}
    a = [scores(args.exp, args.a, s) for s in seeds]
    b = [scores(args.exp, args.b, s) for s in seeds]
    centers = [*sorted({r.get("center") or "" for r in test.values()}), "all"]
    print("| a − b | center | metric | Δ (mean over seeds) | 95% interval, runs redrawn | "
          "slides (positive) |")
    print("|---|---|---|---|---|---|")
    for center in centers:
        ids = sorted(s for s, r in test.items() if center in ("all", r.get("center") or ""))
        labels = np.array([int(test[s]["label"]) for s in ids])
        for metric in METRICS:
            d = paired_difference(args.a, args.b, [np.array([x[s] for s in ids]) for x in a],
                                  [np.array([x[s] for s in ids]) for x in b], labels, metric)
            print(f"| {args.a} − {args.b} | {center} | {metric} | {d.estimate:+.3f} | "
                  f"[{d.seeds_low:+.3f}, {d.seeds_high:+.3f}] | {len(ids)} ({labels.sum()}) |")


if __name__ == "__main__":
    main()
