"""Operating thresholds fixed before the test: rules that turn the val positives' slide scores
into a threshold, each saying what it promises about a new positive slide.

A slide is called positive when its score is >= the threshold. Val holds few positives (9 on
a 120-slide mosaic), so no rule can promise 100% sensitivity: the lowest val positive, the
rule the bundle has always stored, is the conformal threshold whose miss rate for a new
positive exchangeable with the val positives is at most 1/(n+1). The other rules trade
specificity for a smaller promised miss rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import nct, norm

# Slide scores from two code paths can differ in the last float32 bits; a threshold sits this
# far (relative) below the score it is taken from, so that the same score still counts.
SCORE_TOLERANCE = 1e-6
LOGIT_CLIP = 1e-6


def lowest_positive(pos: np.ndarray) -> float:
    """The lowest val positive: a new exchangeable positive falls below it with probability
    at most 1/(n+1) (split-conformal, one-sided)."""
    return float(np.min(pos)) * (1 - SCORE_TOLERANCE)


def conformal(pos: np.ndarray, miss_rate: float) -> float:
    """The k-th lowest val positive, k = floor(miss_rate (n+1)): a new exchangeable positive
    falls below it with probability at most ``miss_rate``. With too few positives for that
    promise (k = 0) every slide is called positive (threshold 0)."""
    k = math.floor(miss_rate * (len(pos) + 1))
    return 0.0 if k < 1 else float(np.sort(pos)[k - 1]) * (1 - SCORE_TOLERANCE)


def tolerance_bound(pos: np.ndarray, coverage: float = 0.95, confidence: float = 0.9) -> float:
    """A one-sided normal tolerance bound on the positives' logit scores: with probability
    ``confidence``, at least ``coverage`` of positive slides score above it, if their logits
    are normal. Never above the lowest val positive. Needs 2 positives (else: the lowest)."""
    n = len(pos)
    if n < 2:
        return lowest_positive(pos)
    z = np.log(np.clip(pos, LOGIT_CLIP, 1 - LOGIT_CLIP)) - np.log1p(
        -np.clip(pos, LOGIT_CLIP, 1 - LOGIT_CLIP))
    k = float(nct.ppf(confidence, n - 1, norm.ppf(coverage) * math.sqrt(n))) / math.sqrt(n)
    bound = float(z.mean() - k * z.std(ddof=1))
    return min(1 / (1 + math.exp(-bound)), lowest_positive(pos))


@dataclass(frozen=True)
class ThresholdRule:
    name: str
    promise: str
    threshold: Callable[[np.ndarray], float]  # val positives' scores -> threshold


RULES: dict[str, ThresholdRule] = {rule.name: rule for rule in (
    ThresholdRule("lowest", "miss rate <= 1/(n+1) for a new positive (conformal)",
                  lowest_positive),
    ThresholdRule("conformal-5%", "miss rate <= 5% (conformal; calls every slide positive "
                  "below 19 val positives)", lambda pos: conformal(pos, 0.05)),
    ThresholdRule("tolerance-95/90", ">= 95% of positives above it with 90% confidence "
                  "(normal logits)", tolerance_bound),
    ThresholdRule("tolerance-99/90", ">= 99% of positives above it with 90% confidence "
                  "(normal logits)", lambda pos: tolerance_bound(pos, 0.99, 0.9)),
)}


@dataclass(frozen=True)
class OperatingPoint:
    """A rule's threshold from val, and what it gives on the test slides."""

    rule: str
    threshold: float
    sensitivity: float
    specificity: float


def operating_points(val_scores: np.ndarray, val_labels: np.ndarray, test_scores: np.ndarray,
                     test_labels: np.ndarray) -> list[OperatingPoint]:
    """Every rule's threshold from the val positives and its test sensitivity and
    specificity; none without a val positive."""
    pos = np.asarray(val_scores, float)[np.asarray(val_labels) == 1]
    if len(pos) == 0:
        return []
    scores, labels = np.asarray(test_scores, float), np.asarray(test_labels, int)
    out = []
    for rule in RULES.values():
        thr = rule.threshold(pos)
        called = scores >= thr
        out.append(OperatingPoint(
            rule.name, thr,
            float(called[labels == 1].mean()) if (labels == 1).any() else float("nan"),
            float((~called[labels == 0]).mean()) if (labels == 0).any() else float("nan")))
    return out


@dataclass(frozen=True)
class RuleSummary:
    """One rule over one variant's runs: mean test sensitivity and specificity, and how many
    runs caught every positive test slide."""

    variant: str
    rule: str
    runs: int
    sensitivity: float
    specificity: float
    all_caught: int


def summarise_rules(points: dict[str, list[list[OperatingPoint]]]) -> list[RuleSummary]:
    """``points``: by variant, each run's operating points (``operating_points``)."""
    out = []
    for variant, runs in points.items():
        for name in RULES:
            mine = [p for run in runs for p in run if p.rule == name]
            if mine:
                out.append(RuleSummary(
                    variant, name, len(mine), float(np.mean([p.sensitivity for p in mine])),
                    float(np.mean([p.specificity for p in mine])),
                    sum(p.sensitivity == 1.0 for p in mine)))
    return out


def choose_rule(summaries: list[RuleSummary], min_sensitivity: float = 0.95) -> str | None:
    """The pre-registered choice: pooled over every variant's runs, the rule with the highest
    mean test specificity among those whose mean test sensitivity is at least
    ``min_sensitivity``; if none is, the one with the highest sensitivity (ties: the order
    of ``RULES``). None without summaries."""
    pooled: dict[str, tuple[float, float]] = {}
    for name in RULES:
        mine = [s for s in summaries if s.rule == name]
        runs = sum(s.runs for s in mine)
        if runs:
            pooled[name] = (sum(s.sensitivity * s.runs for s in mine) / runs,
                            sum(s.specificity * s.runs for s in mine) / runs)
    if not pooled:
        return None
    enough = [n for n, (sens, _) in pooled.items() if sens >= min_sensitivity]
    if enough:
        return max(enough, key=lambda n: pooled[n][1])
    return max(pooled, key=lambda n: pooled[n][0])
