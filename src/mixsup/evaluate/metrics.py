"""Slide-level metrics of the paper, with specificity at 100% sensitivity as the headline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def full_sensitivity_point(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, specificity): the largest threshold keeping every positive at or above it.

    A slide is called positive when its score is >= the threshold, so a negative tied with the
    lowest positive counts as a false positive.
    """
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0:
        return float("nan"), float("nan")
    thr = float(pos.min())
    spec = float((neg < thr).mean()) if len(neg) else float("nan")
    return thr, spec


# What ``mixsup evaluate`` prints and its report shows, in this order.
REPORTED = ("n_pos", "n_neg", "auc", "specificity_at_full_sensitivity",
            "threshold_at_full_sensitivity", "sensitivity", "specificity", "operating_threshold")


@dataclass(frozen=True)
class SlideMetrics:
    n_pos: int
    n_neg: int
    auc: float
    specificity_at_full_sensitivity: float
    threshold_at_full_sensitivity: float
    sensitivity: float  # at the operating threshold
    specificity: float
    operating_threshold: float
    tied_fraction: float
    negatives_at_full_sensitivity_threshold: int
    tp: int
    fp: int
    tn: int
    fn: int


def slide_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> SlideMetrics:
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    pos, neg = labels == 1, labels == 0
    thr_full, spec_full = full_sensitivity_point(scores, labels)
    called = scores >= threshold
    both = pos.any() and neg.any()
    return SlideMetrics(
        n_pos=int(pos.sum()),
        n_neg=int(neg.sum()),
        auc=float(roc_auc_score(labels, scores)) if both else float("nan"),
        specificity_at_full_sensitivity=spec_full,
        threshold_at_full_sensitivity=thr_full,
        sensitivity=float(called[pos].mean()) if pos.any() else float("nan"),
        specificity=float((~called[neg]).mean()) if neg.any() else float("nan"),
        operating_threshold=float(threshold),
        tied_fraction=tied_fraction(scores),
        negatives_at_full_sensitivity_threshold=int(
            np.isclose(scores[neg], thr_full, rtol=1e-6, atol=0).sum()) if pos.any() else 0,
        tp=int((called & pos).sum()),
        fp=int((called & neg).sum()),
        tn=int((~called & neg).sum()),
        fn=int((~called & pos).sum()),
    )


def tied_fraction(scores: np.ndarray) -> float:
    """Share of slides whose score equals another slide's (to 1e-6): saturated scores pile up
    on a few values (multiples of 1/K, or 0 and 1), and a threshold between them is a coin
    toss."""
    s = np.sort(np.asarray(scores, float))
    if len(s) < 2:
        return 0.0
    close = np.isclose(s[1:], s[:-1], rtol=1e-6, atol=1e-9)
    tied = np.zeros(len(s), bool)
    tied[1:] |= close
    tied[:-1] |= close
    return float(tied.mean())


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve(np.asarray(labels, int), np.asarray(scores, float))
    return fpr, tpr
