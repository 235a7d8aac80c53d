"""Paired bootstrap differences: the vectorised metrics agree with the reported ones, and the
interval behaves as an interval should."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mixsup.evaluate.metrics import full_sensitivity_point
from mixsup.evaluate.paired import (
    auc_rows,
    over_seeds,
    paired_difference,
    spec_at_full_sens_rows,
)


def test_row_metrics_equal_the_reported_ones_ties_included():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(4, 30))
        labels = np.r_[1, 0, rng.integers(0, 2, n - 2)]
        scores = rng.choice([0.1, 0.2, 0.5, 0.9], n) if rng.random() < 0.5 else rng.random(n)
        row = auc_rows(scores[None], labels[None])[0]
        assert row == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        spec = spec_at_full_sens_rows(scores[None], labels[None])[0]
        assert spec == pytest.approx(full_sensitivity_point(scores, labels)[1], abs=1e-12)


def test_identical_modes_differ_by_exactly_zero():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(10, int), np.zeros(10, int)]
    s = [rng.random(20) for _ in range(3)]
    d = paired_difference("a", "b", s, s, labels, n_boot=200)
    assert d.estimate == d.low == d.high == 0.0 and d.per_seed == (0.0, 0.0, 0.0)


def test_a_clear_winner_excludes_zero_and_a_coin_toss_does_not():
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(30, int), np.zeros(30, int)]
    good = [labels + rng.normal(0, 0.4, 60) for _ in range(3)]
    bad = [labels + rng.normal(0, 2.0, 60) for _ in range(3)]
    win = paired_difference("good", "bad", good, bad, labels, n_boot=500)
    assert win.excludes_zero and win.low > 0 and win.low <= win.estimate <= win.high
    same = [labels + rng.normal(0, 1.0, 60) for _ in range(3)]
    other = [labels + rng.normal(0, 1.0, 60) for _ in range(3)]
    toss = paired_difference("x", "y", same, other, labels, n_boot=500)
    assert toss.low < 0 < toss.high
    expected = [roc_auc_score(labels, g) - roc_auc_score(labels, b)
                for g, b in zip(good, bad, strict=True)]
    assert win.per_seed == pytest.approx(expected)


def test_the_draw_is_shared_by_the_seeds():
    """Two seeds with swapped roles cancel in every replicate when the draw is shared."""
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(8, int), np.zeros(8, int)]
    x, y = rng.random(16), rng.random(16)
    d = paired_difference("a", "b", [x, y], [y, x], labels, n_boot=300)
    assert d.low == pytest.approx(0.0, abs=1e-12) and d.high == pytest.approx(0.0, abs=1e-12)


def test_one_class_or_misaligned_scores_are_refused():
    with pytest.raises(ValueError, match="positive and negative"):
        paired_difference("a", "b", [np.ones(3)], [np.ones(3)], np.ones(3, int))
    with pytest.raises(ValueError, match="same order"):
        paired_difference("a", "b", [np.ones(3)], [np.ones(4)], np.array([1, 0, 1]))


def test_the_seeds_interval_is_the_seeds_spread_when_the_slides_do_not_matter():
    """Seed 1 ranks perfectly and seed 2 perfectly wrongly against a constant score: every
    slide draw gives the same per-seed differences (+0.5, -0.5), so the slides' interval is
    exactly 0, and the seeds' is Student's interval of the mean of two values 1 apart (1
    degree of freedom: all of the variance is the seeds')."""
    labels = np.r_[np.ones(5, int), np.zeros(5, int)]
    right, wrong, flat = labels.astype(float), 1.0 - labels, np.full(10, 0.5)
    d = paired_difference("a", "b", [right, wrong], [flat, flat], labels, n_boot=2000)
    assert d.per_seed == (0.5, -0.5) and d.estimate == 0.0
    assert d.low == d.high == 0.0
    t1 = 12.706204736174698  # Student's t, 97.5%, 1 degree of freedom
    assert (d.seeds_low, d.seeds_high) == pytest.approx((-t1 * 0.5, t1 * 0.5), abs=1e-9)


def test_the_seeds_interval_holds_the_slides_share_when_the_seeds_agree():
    """Identical rows: no seed effect and no interaction, so the interval is Student's one of
    the slides' bootstrap spread, with the slides' degrees of freedom (C - 1)."""
    x = np.array([0.1, 0.3, -0.2, 0.4, 0.0, 0.2])
    lo, hi, _ = over_seeds(np.stack([x, x, x]), np.array([0.1, 0.1, 0.1]), 0.95, n_slides=11)
    half = 2.228138851986274 * x.std(ddof=1)  # Student's t, 97.5%, 10 degrees of freedom
    assert (lo, hi) == pytest.approx((0.1 - half, 0.1 + half), abs=1e-12)


def test_the_seeds_spread_keeps_its_interaction_and_its_r_minus_1_degrees_of_freedom():
    """Two seeds whose draws move in opposite ways (pure interaction, mean fixed at 0) and
    whose differences on the slides are 0.1 apart. The interaction is part of what the two
    seeds' spread measures, and it is measured as noisily: the interval is Student's over the
    two values with 1 degree of freedom, and the slides add nothing (their share is all
    interaction)."""
    x = np.array([0.2, -0.2, 0.2, -0.2])
    lo, hi, _ = over_seeds(np.stack([x, -x]), np.array([0.05, -0.05]), 0.95, n_slides=40)
    t1 = 12.706204736174698
    half = t1 * np.sqrt(np.var([0.05, -0.05], ddof=1) / 2)
    assert (lo, hi) == pytest.approx((-half, half), abs=1e-12)


def test_a_seeds_share_near_zero_no_longer_makes_a_z_interval():
    """The reviewer's case: five seeds whose spread is about what the interaction predicts.
    The old estimator subtracted the interaction, left no seed share and used ~1,500 degrees
    of freedom; the seeds' spread now keeps its R - 1 = 4 and the interval is the wider one."""
    rng = np.random.default_rng(3)
    boot = rng.normal(0, 0.03, (5, 4000)) + rng.normal(0, 0.02, 4000)
    per_seed = np.array([0.03, 0.09, 0.05, 0.11, 0.06])
    lo, hi, _ = over_seeds(boot, per_seed, 0.95, n_slides=42)
    v_mean = boot.mean(0).var(ddof=1)
    inter = (boot.var(1, ddof=1).mean() - v_mean) * 5 / 4
    seeds, slides = per_seed.var(ddof=1) / 5, v_mean - inter / 5
    df = (seeds + slides) ** 2 / (seeds ** 2 / 4 + slides ** 2 / 41)
    assert df < 41
    from scipy.stats import t

    half = t.ppf(0.975, df) * np.sqrt(seeds + slides)
    assert (lo, hi) == pytest.approx((per_seed.mean() - half, per_seed.mean() + half))
    assert hi - lo > 2 * 1.96 * np.sqrt(seeds + slides)


def test_one_seed_has_no_interval_over_seeds():
    labels = np.r_[np.ones(4, int), np.zeros(4, int)]
    rng = np.random.default_rng(5)
    d = paired_difference("a", "b", [rng.random(8)], [rng.random(8)], labels, n_boot=100)
    assert np.isnan(d.seeds_low) and np.isnan(d.seeds_high) and not d.excludes_zero_over_seeds


def test_holm_multiplies_the_kth_smallest_by_m_minus_k_plus_1_and_stays_monotone():
    from mixsup.evaluate.paired import holm

    adjusted = holm([0.01, 0.04, 0.03, float("nan"), 0.5])
    assert adjusted[:3] == pytest.approx([0.04, 0.09, 0.09])  # 4x0.01, max(3x0.03, 2x0.04)
    assert np.isnan(adjusted[3]) and adjusted[4] == pytest.approx(0.5)
    assert holm([0.6, 0.9])[1] == 1.0 and holm([]).size == 0


def test_the_seeds_p_agrees_with_the_interval():
    """The interval excludes zero exactly when p is below 1 - level."""
    labels = np.r_[np.ones(8, int), np.zeros(8, int)]
    rng = np.random.default_rng(2)
    for shift in (0.0, 0.3, 1.0):
        a = [labels * (1 + shift) + rng.normal(0, 0.8, 16) for _ in range(4)]
        b = [labels + rng.normal(0, 0.8, 16) for _ in range(4)]
        d = paired_difference("a", "b", a, b, labels, n_boot=500)
        assert (d.seeds_p < 0.05) == d.excludes_zero_over_seeds
