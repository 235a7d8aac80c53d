"""Paired differences between two modes on the same test slides, with a bootstrap interval.

For every seed both modes scored the same slides. One bootstrap replicate draws the slides
with replacement, positives and negatives separately (so every replicate keeps the class
counts and the AUC is defined), and applies the same draw to both modes and to every seed:
the test slides are one sample, shared by the seeds, and resampling them independently per
seed would shrink the interval as if each seed had its own slides. The statistic is the mean
over seeds of (metric of mode a - metric of mode b); the interval is its percentile interval.

That interval holds the trained models fixed: it says how sure the difference is for these
seeds' runs. A second interval asks about a new draw of the runs as well (a new
initialisation, data order and choice of kept slides). Seeds and slides are crossed (every
seed scored the same slides), so resampling both at once (a "pigeonhole" bootstrap) counts
their interaction three times over and is too wide. Its variance is put together instead from
its parts by the method of moments (``over_seeds``): the seeds' spread, which is measured from
R values and so gets R - 1 degrees of freedom, and the slides' share from the bootstrap; the
interval is Student's t with Welch-Satterthwaite's degrees of freedom.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata, t

BatchMetric = Callable[[np.ndarray, np.ndarray], np.ndarray]


def auc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of every row of ``scores`` (B, n) against ``labels`` (B, n): the Mann-Whitney
    statistic with ties counted a half, as ``sklearn.metrics.roc_auc_score`` computes it."""
    ranks = rankdata(scores, axis=1)
    pos = labels == 1
    n_pos, n_neg = pos.sum(1), (~pos).sum(1)
    u = (ranks * pos).sum(1) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def spec_at_full_sens_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Specificity at 100% sensitivity of every row, as ``metrics.full_sensitivity_point``: the
    share of negatives strictly below the lowest positive."""
    pos = labels == 1
    thr = np.where(pos, scores, np.inf).min(1, keepdims=True)
    return ((scores < thr) & ~pos).sum(1) / (~pos).sum(1)


METRICS: dict[str, BatchMetric] = {"auc": auc_rows,
                                   "specificity_at_full_sensitivity": spec_at_full_sens_rows}


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` on ``metric``, pooled over seeds, with its bootstrap interval."""

    a: str
    b: str
    metric: str
    estimate: float  # mean over seeds of the per-seed difference
    low: float  # the interval over test slides, for these seeds' runs
    high: float
    per_seed: tuple[float, ...]
    n_slides: int
    n_boot: int
    level: float
    seeds_low: float  # the interval over seeds and test slides (``over_seeds``); NaN: 1 seed
    seeds_high: float
    seeds_p: float  # two-sided p of "no difference" for that interval's t; NaN: 1 seed

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def excludes_zero_over_seeds(self) -> bool:
        return self.seeds_low > 0 or self.seeds_high < 0


def paired_difference(a: str, b: str, scores_a: list[np.ndarray], scores_b: list[np.ndarray],
                      labels: np.ndarray, metric: str = "auc", n_boot: int = 2000,
                      level: float = 0.95, seed: int = 0) -> PairedDifference:
    """``scores_a[s]``, ``scores_b[s]``: seed s's scores of the same slides, in ``labels``'
    order. Needs both classes."""
    fn = METRICS[metric]
    labels = np.asarray(labels, int)
    a_all, b_all = np.asarray(scores_a, float), np.asarray(scores_b, float)
    if a_all.shape != b_all.shape or a_all.ndim != 2 or a_all.shape[1] != len(labels):
        raise ValueError("both modes need one score per slide per seed, in the same order")
    if not (labels == 1).any() or not (labels == 0).any():
        raise ValueError("paired differences need positive and negative slides")
    per_seed = fn(a_all, np.broadcast_to(labels, a_all.shape)) - fn(
        b_all, np.broadcast_to(labels, b_all.shape))
    boot = slide_bootstrap(a_all, b_all, labels, fn, n_boot, np.random.default_rng(seed))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(boot.mean(0), [tail, 100 - tail])
    s_low, s_high, s_p = over_seeds(boot, per_seed, level, len(labels))
    return PairedDifference(a, b, metric, float(per_seed.mean()), float(low), float(high),
                            tuple(float(d) for d in per_seed), len(labels), n_boot, level,
                            s_low, s_high, s_p)


def slide_bootstrap(a_all: np.ndarray, b_all: np.ndarray, labels: np.ndarray, fn: BatchMetric,
                    n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(seeds, n_boot): each seed's ``fn(a) - fn(b)`` under ``n_boot`` draws of the slides with
    replacement, positives and negatives separately, every draw shared by all the seeds."""
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    draw = np.concatenate([rng.choice(pos, (n_boot, len(pos))),
                           rng.choice(neg, (n_boot, len(neg)))], axis=1)
    y = labels[draw]
    return np.stack([fn(sa[draw], y) - fn(sb[draw], y)
                     for sa, sb in zip(a_all, b_all, strict=True)])


def over_seeds(boot: np.ndarray, per_seed: np.ndarray, level: float,
               n_slides: int) -> tuple[float, float, float]:
    """The interval of the mean difference for a new draw of seeds and of test slides.

    ``boot``: (seeds, replicates) per-seed differences under shared slide draws;
    ``per_seed``: the differences on the slides themselves. With R seeds and C slides the
    estimate's variance is seed/R + slide/C + interaction/(RC). The spread of ``per_seed``
    over R gives seed/R + interaction/(RC) directly, with R - 1 degrees of freedom: the
    interaction is not taken out of it, as it is measured as noisily as the seeds' share.
    The slides' share is the bootstrap variance of the mean, less the interaction that the
    seeds' spread already holds (their gap measured from the draws). The two parts are
    combined by Welch-Satterthwaite, the slides' part with C - 1 degrees of freedom. Returns
    (low, high, two-sided p of a zero difference); NaN with one seed: a seed's share cannot be
    measured."""
    r = len(boot)
    if r < 2:
        return float("nan"), float("nan"), float("nan")
    v_mean = float(boot.mean(0).var(ddof=1))  # slide/C + interaction/(RC)
    v_one = float(boot.var(1, ddof=1).mean())  # slide/C + interaction/C
    interaction = max(0.0, (v_one - v_mean) * r / (r - 1))  # interaction / C
    slides = max(0.0, v_mean - interaction / r)
    seeds = float(np.var(per_seed, ddof=1)) / r
    total = seeds + slides
    est = float(np.mean(per_seed))
    if total == 0:
        return est, est, 1.0 if est == 0 else 0.0
    df = total ** 2 / (seeds ** 2 / (r - 1) + slides ** 2 / max(1, n_slides - 1))
    half = float(t.ppf(0.5 + level / 2, df)) * np.sqrt(total)
    p = float(2 * t.sf(abs(est) / np.sqrt(total), df))
    return est - half, est + half, p


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values`` for the family they form: the k-th smallest
    is multiplied by (m - k + 1), made monotone, and capped at 1. NaN stays NaN and does not
    count in the family."""
    p = np.asarray(p_values, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * float(p[i])))
        out[i] = running
    return out
