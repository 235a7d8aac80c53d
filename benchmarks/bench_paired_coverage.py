"""How often the paired intervals hold the true mean difference, on simulated experiments
whose truth is known: R seeds of two modes scoring the same C test slides, with a seed effect
of size ``tau`` (how much a new initialisation and draw of kept slides moves a mode's AUC).
Compared in the same run: the slides-only bootstrap (for the R runs made), the interval over
seeds and slides (``evaluate.paired.over_seeds``), and the pigeonhole bootstrap it replaced
(seeds and slides both resampled). The target is the nominal 95%.

    python benchmarks/bench_paired_coverage.py [--worlds 300] [--seeds 5]
"""

from __future__ import annotations

import argparse

import numpy as np

from mixsup.evaluate.paired import auc_rows, over_seeds, slide_bootstrap


def world(rng: np.random.Generator, seeds: int, n_pos: int, n_neg: int,
          tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two modes' scores: a shared slide difficulty, a per-seed separation (mode a 1.2, mode b
    1.0, each + N(0, tau)) and per-seed-and-slide noise (the interaction)."""
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    z = rng.normal(0, 1, len(y))
    a = np.array([y * (1.2 + rng.normal(0, tau)) + z + rng.normal(0, 0.7, len(y))
                  for _ in range(seeds)])
    b = np.array([y * (1.0 + rng.normal(0, tau)) + z + rng.normal(0, 0.7, len(y))
                  for _ in range(seeds)])
    return a, b, y


def diff(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
    labels = np.broadcast_to(y, a.shape)
    return auc_rows(a, labels) - auc_rows(b, labels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worlds", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--boot", type=int, default=500)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.seeds} seeds, 16 + 26 test slides, {args.worlds} simulated experiments each")
    print(f"{'tau':>5} {'method':<22} {'coverage':>9} {'mean width':>11}")
    for tau in (0.0, 0.3, 0.8):
        truth = float(diff(*world(np.random.default_rng(99), 400, 3000, 3000, tau)).mean())
        hits = {"slides only": [], "over_seeds": [], "pigeonhole": []}
        for _ in range(args.worlds):
            a, b, y = world(rng, args.seeds, 16, 26, tau)
            boot = slide_bootstrap(a, b, y, auc_rows, args.boot, rng)
            redrawn = rng.integers(0, len(a), (len(a), args.boot))
            intervals = {
                "slides only": tuple(np.percentile(boot.mean(0), [2.5, 97.5])),
                "over_seeds": over_seeds(boot, diff(a, b, y), 0.95),
                "pigeonhole": tuple(np.percentile(
                    np.take_along_axis(boot, redrawn, 0).mean(0), [2.5, 97.5]))}
            for name, (lo, hi) in intervals.items():
                hits[name].append((lo <= truth <= hi, hi - lo))
        for name, h in hits.items():
            cover, width = np.mean([c for c, _ in h]), np.mean([w for _, w in h])
            print(f"{tau:>5} {name:<22} {cover:>9.3f} {width:>11.3f}")


if __name__ == "__main__":
    main()
