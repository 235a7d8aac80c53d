"""Operating-threshold rules: exact values, and the promises they make hold in simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from mixsup.evaluate.thresholds import (
    RULES,
    SCORE_TOLERANCE,
    conformal,
    lowest_positive,
    operating_points,
    tolerance_bound,
)


def test_lowest_positive_sits_just_below_the_lowest_positive():
    assert lowest_positive(np.array([0.7, 0.4, 0.9])) == pytest.approx(0.4 * (1 - 1e-6))
    assert lowest_positive(np.array([0.4])) < 0.4


def test_conformal_takes_the_kth_lowest_and_gives_up_below_its_sample_size():
    pos = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.6, 0.4])  # n = 9
    assert conformal(pos, 0.1) == pytest.approx(0.1 * (1 - SCORE_TOLERANCE))  # k = 1
    assert conformal(pos, 0.2) == pytest.approx(0.2 * (1 - SCORE_TOLERANCE))  # k = 2
    assert conformal(pos, 0.05) == 0.0  # k = floor(0.5) = 0: no threshold keeps the promise
    assert conformal(np.linspace(0.1, 0.9, 19), 0.05) == pytest.approx(0.1 * (1 - 1e-6))


def test_tolerance_bound_matches_the_normal_tolerance_factor_on_logits():
    """Against the textbook one-sided factors for n = 10 (NIST/SEMATECH handbook tables):
    95% coverage with 90% confidence k = 2.568, with 95% confidence k = 2.911."""
    z = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    pos = 1 / (1 + np.exp(-z))
    got = tolerance_bound(pos)
    expected = 1 / (1 + np.exp(-(z.mean() - 2.568 * z.std(ddof=1))))
    assert got == pytest.approx(expected, rel=1e-3)
    expected = 1 / (1 + np.exp(-(z.mean() - 2.911 * z.std(ddof=1))))
    assert tolerance_bound(pos, 0.95, 0.95) == pytest.approx(expected, rel=1e-3)
    assert got < lowest_positive(pos)


def test_tolerance_bound_never_exceeds_the_lowest_positive_and_needs_two():
    assert tolerance_bound(np.array([0.3])) == lowest_positive(np.array([0.3]))
    tight = np.array([0.5, 0.5000001, 0.9999999])
    assert tolerance_bound(tight) <= lowest_positive(tight)


def test_the_tolerance_promise_holds_in_simulation():
    """With normal logits, the bound leaves >= 95% of positives above it in about >= 90% of
    draws of 9 val positives."""
    rng = np.random.default_rng(0)
    kept = []
    for _ in range(2000):
        z = rng.normal(1.0, 1.5, 9)
        thr = tolerance_bound(1 / (1 + np.exp(-z)))
        logit = np.log(thr / (1 - thr))
        kept.append(norm.sf(logit, 1.0, 1.5) >= 0.95)
    assert np.mean(kept) == pytest.approx(0.9, abs=0.025)


def test_operating_points_score_every_rule_on_the_test_slides():
    val = np.array([0.2, 0.6, 0.8, 0.1, 0.3])
    vy = np.array([0, 1, 1, 0, 1])
    test = np.array([0.25, 0.31, 0.65, 0.05, 0.9, 0.29])
    ty = np.array([1, 1, 1, 0, 0, 0])
    points = {p.rule: p for p in operating_points(val, vy, test, ty)}
    assert set(points) == set(RULES)
    low = points["lowest"]  # threshold just below 0.3
    assert low.sensitivity == pytest.approx(2 / 3) and low.specificity == pytest.approx(2 / 3)
    assert points["conformal-5%"].sensitivity == 1.0
    assert points["conformal-5%"].specificity == 0.0
    assert operating_points(val, np.zeros(5), test, ty) == []


def test_the_choice_rule_pools_the_runs_and_trades_only_above_the_sensitivity_floor():
    from mixsup.evaluate.thresholds import RuleSummary, choose_rule

    s = [RuleSummary("mixed", "lowest", 5, 0.96, 0.60, 3),
         RuleSummary("pixel", "lowest", 5, 0.90, 0.70, 1),  # pooled: 0.93 < 0.95
         RuleSummary("mixed", "tolerance-95/90", 5, 1.0, 0.40, 5),
         RuleSummary("pixel", "tolerance-95/90", 5, 0.98, 0.45, 4),  # pooled 0.99, spec 0.425
         RuleSummary("mixed", "conformal-5%", 5, 1.0, 0.0, 5),
         RuleSummary("pixel", "conformal-5%", 5, 1.0, 0.0, 5)]
    assert choose_rule(s) == "tolerance-95/90"
    assert choose_rule(s, min_sensitivity=0.9) == "lowest"
    assert choose_rule([RuleSummary("m", "lowest", 2, 0.5, 0.9, 0),
                        RuleSummary("m", "tolerance-99/90", 2, 0.8, 0.1, 1)]) == "tolerance-99/90"
    assert choose_rule([]) is None
