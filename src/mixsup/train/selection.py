"""The choice of round (by θ2's losses) and the operating threshold."""

from __future__ import annotations

import logging

import numpy as np

from mixsup.evaluate.thresholds import lowest_positive
from mixsup.train.results import Selection, Stage2Summary, ValScores

log = logging.getLogger(__name__)


SELECT_KEYS = {"train_curve": "train_curve", "train_loss": "train_loss", "val": "val_loss"}


def select_round(summaries: list[Stage2Summary], select_by: str,
                 tolerance: float = 1e-3, tie_break: str = "val_loss") -> Selection:
    """The round whose θ2 learns best by ``select_by``:

    - ``train_curve`` (default): the mean of θ2's per-epoch training losses, the area under its
      training curve. Every round trains θ2 in the same batch order (from the same weights with
      ``stage2.init=encoder``, from its own θ1 otherwise), so the curves differ through the
      top-K patches and θ1's start; unlike the final loss it does not
      saturate when θ2 memorises its few training slides.
    - ``train_loss``: the paper's rule, θ2's final training loss (saturates on small data).
    - ``val``: θ2's loss on the labelled val slides.

    Rounds within ``tolerance`` (absolute) of the best are a tie: it is reported, and broken
    by ``tie_break``: ``val_loss`` (where every tied round has one, else as ``latest``),
    ``latest`` (more EM refinement) or ``earliest`` (an argmin's first, the paper's rule with
    tolerance 0).
    """
    key = SELECT_KEYS[select_by]
    values = {s.round: _value(s, key) for s in summaries}
    finite = {r: v for r, v in values.items() if np.isfinite(v)}
    if not finite:
        if select_by == "val":
            raise ValueError("select_by=val needs labelled val slides")
        raise ValueError(f"no round has a finite {key}")
    best = min(finite.values())
    tied = tuple(sorted(r for r, v in finite.items() if v <= best + tolerance))
    if len(tied) == 1:
        return Selection(tied[0], select_by, values, tied, f"lowest {key}")
    by_val = {s.round: _value(s, "val_loss") for s in summaries if s.round in tied}
    if tie_break == "earliest":
        chosen = tied[0]
        rule = f"rounds {list(tied)} tie on {key} (within {tolerance:g}); the earliest"
    elif (tie_break == "val_loss" and key != "val_loss"
          and all(np.isfinite(v) for v in by_val.values())):
        chosen = min(sorted(by_val), key=lambda r: by_val[r])
        rule = f"rounds {list(tied)} tie on {key} (within {tolerance:g}); lowest val_loss"
    else:
        chosen = tied[-1]
        rule = f"rounds {list(tied)} tie on {key} (within {tolerance:g}); the latest"
    log.warning("round selection: %s -> round %d", rule, chosen)
    return Selection(chosen, select_by, values, tied, rule)


def _value(summary: Stage2Summary, key: str) -> float:
    value = getattr(summary, key)
    return float("nan") if value is None else float(value)


def full_sensitivity_threshold(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """The largest threshold that keeps every positive at or above it: the lowest positive,
    lowered by ``thresholds.SCORE_TOLERANCE`` so that the same score from another code path
    still counts (``thresholds.lowest_positive``)."""
    pos = np.asarray(scores, float)[np.asarray(labels, int) == 1]
    return lowest_positive(pos) if len(pos) and np.isfinite(pos).all() else None


def operating_threshold(val: ValScores | None) -> tuple[float, str]:
    """The largest threshold keeping 100% sensitivity on val; 0.5 without val positives."""
    if val is not None and val.scores:
        ids = list(val.scores)
        thr = full_sensitivity_threshold(np.array([val.scores[i] for i in ids]),
                                         np.array([val.labels[i] for i in ids]))
        if thr is not None:
            return thr, "val: lowest positive score (100% sensitivity)"
    log.warning("no labelled positive val slide: the operating threshold defaults to 0.5")
    return 0.5, "default 0.5 (no positive val slide)"
