"""How often the paired intervals hold the true mean difference, on simulated experiments
whose truth is known: R seeds of two modes scoring the same test slides, with a seed effect
of size ``tau`` (how much a new initialisation and draw of kept slides moves a mode's AUC), a
seed x slide interaction of size ``noise``, and, with ``shared``, half of each seed's noise and
seed effect common to both modes (mixed and pixel share round 0). Compared in the same run:
the slides-only bootstrap (for the R runs made), the interval over seeds and slides
(``evaluate.paired.over_seeds``), a plain paired t over the R per-seed differences, and the
pigeonhole bootstrap (seeds and slides both resampled). The target is the nominal 95%.

    python benchmarks/bench_paired_coverage.py [--worlds 200] [--seeds 5]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from scipy.stats import t

from mixsup.evaluate.paired import auc_rows, over_seeds, slide_bootstrap


def world(rng: np.random.Generator, seeds: int, n_pos: int, n_neg: int, tau: float,
          noise: float = 0.7, shared: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two modes' scores: a shared slide difficulty, a per-seed separation (mode a 1.2, mode b
    1.0, each + N(0, tau)) and per-seed-and-slide noise (the interaction)."""
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    z = rng.normal(0, 1, len(y))
    rho = 0.5 if shared else 0.0
    a, b = [], []
    for _ in range(seeds):
        common_tau, common_noise = rng.normal(0, tau), rng.normal(0, noise, len(y))
        for mode, sep in ((a, 1.2), (b, 1.0)):
            eff = np.sqrt(rho) * common_tau + np.sqrt(1 - rho) * rng.normal(0, tau)
            e = np.sqrt(rho) * common_noise + np.sqrt(1 - rho) * rng.normal(0, noise, len(y))
            mode.append(y * (sep + eff) + z + e)
    return np.array(a), np.array(b), y


def diff(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
    labels = np.broadcast_to(y, a.shape)
    return auc_rows(a, labels) - auc_rows(b, labels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worlds", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--boot", type=int, default=400)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    r = args.seeds
    print(f"{r} seeds, {args.worlds} simulated experiments per row; nominal coverage 0.95")
    print(f"{'slides':>7} {'tau':>4} {'noise':>5} {'shared':>6} {'method':<12} {'coverage':>8} "
          f"{'width':>6}")
    for n, tau, noise, shared in itertools.product((21, 63), (0.0, 0.3, 0.8), (0.3, 0.7),
                                                   (False, True)):
        truth = float(diff(*world(np.random.default_rng(99), 400, 3000, 3000, tau, noise,
                                  shared)).mean())
        hits: dict[str, list[tuple[bool, float]]] = {
            "slides only": [], "over_seeds": [], "paired t": [], "pigeonhole": []}
        for _ in range(args.worlds):
            a, b, y = world(rng, r, n, n, tau, noise, shared)
            boot = slide_bootstrap(a, b, y, auc_rows, args.boot, rng)
            d = diff(a, b, y)
            redrawn = rng.integers(0, len(a), (len(a), args.boot))
            half_t = float(t.ppf(0.975, r - 1)) * d.std(ddof=1) / np.sqrt(r)
            intervals = {
                "slides only": tuple(np.percentile(boot.mean(0), [2.5, 97.5])),
                "over_seeds": over_seeds(boot, d, 0.95, len(y))[:2],
                "paired t": (d.mean() - half_t, d.mean() + half_t),
                "pigeonhole": tuple(np.percentile(
                    np.take_along_axis(boot, redrawn, 0).mean(0), [2.5, 97.5]))}
            for name, (lo, hi) in intervals.items():
                hits[name].append((lo <= truth <= hi, hi - lo))
        for name, h in hits.items():
            cover, width = np.mean([c for c, _ in h]), np.mean([w for _, w in h])
            print(f"{n:>3}+{n:<3} {tau:>4} {noise:>5} {shared!s:>6} {name:<12} {cover:>8.3f} "
                  f"{width:>6.3f}", flush=True)


if __name__ == "__main__":
    main()
