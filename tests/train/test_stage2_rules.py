from __future__ import annotations

import numpy as np
import pytest

from mixsup.storage.records import to_json
from mixsup.train.results import (
    MapStats,
    PoolSizes,
    PoolStats,
    RoundSummary,
    Stage2Summary,
    ValScores,
)
from mixsup.train.selection import (
    full_sensitivity_threshold,
    operating_threshold,
    select_round,
)
from mixsup.train.stage2 import BalancedSlideSampler, bce

NAN = float("nan")


def _s2(r: int, train_loss: float = NAN, train_curve: float = NAN,
        val_loss: float | None = None) -> Stage2Summary:
    return Stage2Summary(r, [], train_curve, train_loss, 4, val_loss)


def test_balanced_sampler():
    labels = [1, 0, 0, 0, 0, 0, 1, 0]
    sampler = BalancedSlideSampler(labels, slides_per_batch=4, steps=50, seed=1)
    for batch in sampler:
        assert sum(labels[i] for i in batch) == 2 and len(batch) == 4
    with pytest.raises(ValueError):
        BalancedSlideSampler([1, 1], 2, 1)


@pytest.mark.parametrize("per_batch", [1, 3, 5])
@pytest.mark.parametrize("steps", [1, 3, 4])
def test_balanced_sampler_with_odd_batches_balances_over_steps(per_batch, steps):
    labels = [1, 0, 0, 0, 1, 0, 0]
    sampler = BalancedSlideSampler(labels, per_batch, steps, seed=2)
    diff = 0  # positives minus negatives drawn so far, across epochs
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert len(batch) == per_batch
            diff += sum(2 * labels[i] - 1 for i in batch)
            assert abs(diff) <= 1
    other_rank = BalancedSlideSampler(labels, per_batch, steps, seed=2, rank=1)
    other_rank.set_epoch(sampler.epoch)
    for mine, theirs in zip(sampler, other_rank, strict=True):  # each global batch balanced
        assert sum(labels[i] for i in mine + theirs) == per_batch


def test_round_selection_rule():
    summaries = [_s2(0, train_loss=0.3, val_loss=0.2),
                 _s2(1, train_loss=0.1, val_loss=0.5),
                 _s2(2, train_loss=0.1, val_loss=0.4)]
    choice = select_round(summaries, "train_loss")
    assert (choice.round, choice.tied) == (2, (1, 2))  # tie broken by the val loss
    assert "tie" in choice.rule and "val_loss" in choice.rule
    assert select_round(summaries, "val").round == 0
    with pytest.raises(ValueError):
        select_round([_s2(0, train_loss=0.1)], "val")


def test_round_selection_when_theta2_saturates():
    """θ2 memorises every round (final loss at the clip floor): the paper's rule can only tie;
    the training curve still tells the rounds apart and picks the one θ2 learnt fastest."""
    floor = 1.0000005e-06
    summaries = [_s2(0, train_loss=floor, train_curve=0.41),
                 _s2(1, train_loss=floor, train_curve=0.22),
                 _s2(2, train_loss=floor, train_curve=0.30)]
    assert select_round(summaries, "train_curve").round == 1
    paper = select_round(summaries, "train_loss")
    assert paper.tied == (0, 1, 2) and paper.round == 2  # reported, not silently round 0
    assert select_round(summaries, "train_curve", tolerance=0.1).tied == (1, 2)
    assert to_json(select_round(summaries, "train_curve"))["values"]["1"] == 0.22


def test_bce():
    assert bce(np.array([0.5, 0.5]), [0, 1]) == pytest.approx(np.log(2))


def test_operating_threshold_keeps_ties_from_another_code_path():
    val = np.array([0.7500000596, 0.9, 0.1])  # float32 noise on a tied 0.75 slide
    thr = full_sensitivity_threshold(val, np.array([1, 1, 0]))
    assert 0.75 >= thr > 0.7499  # the same slide scored alone (0.75) is still called positive
    assert thr > 0.1
    assert full_sensitivity_threshold(val, np.array([0, 0, 0])) is None
    tiny = full_sensitivity_threshold(np.array([1e-18, 0.0]), np.array([1, 0]))
    assert 0.0 < tiny <= 1e-18  # relative, so tiny thresholds stay above zero scores


def test_operating_threshold_from_val_scores():
    val = ValScores({"a": 0.7500000596, "b": 0.9, "c": 0.1}, {"a": 1, "b": 1, "c": 0})
    thr, source = operating_threshold(val)
    assert thr == full_sensitivity_threshold(np.array([0.7500000596, 0.9, 0.1]),
                                             np.array([1, 1, 0]))
    assert "val" in source
    no_positive = ValScores({"c": 0.1}, {"c": 0})
    assert operating_threshold(no_positive)[0] == operating_threshold(None)[0] == 0.5


def test_collapse_rule():
    from mixsup.train.rounds import collapsed

    def summary(above: int) -> RoundSummary:
        return RoundSummary(1, 2, [0.5, 0.4], 0.4, PoolStats(PoolSizes(10, 5, 5)),
                            MapStats(0.1, 0.0, above), 1.0, 1.0, 100.0)

    assert collapsed(summary(100), summary(555), 0.2)  # 0.18 of the previous round's
    assert not collapsed(summary(209), summary(555), 0.2)
    assert not collapsed(summary(0), summary(0), 0.2)  # nothing to lose


def test_a_collapsed_round_stays_selectable_under_warn_and_not_under_rollback():
    from mixsup.train.rounds import selection_candidates

    rounds = {0: False, 1: True, 2: False}
    assert selection_candidates(rounds, 2, False, "warn") == [1, 2]
    assert selection_candidates(rounds, 2, False, "rollback") == [2]
    every_later_collapsed = {0: False, 1: True, 2: True}
    assert selection_candidates(every_later_collapsed, 2, False, "warn") == [1, 2]
    assert selection_candidates(every_later_collapsed, 2, False, "rollback") == [0]
    assert selection_candidates(rounds, 2, True, "warn") == [0, 1, 2]


def test_the_papers_tie_rule_takes_an_argmins_first_round():
    from mixsup.train.results import Stage2Summary
    from mixsup.train.selection import select_round

    def s2(r: int, loss: float, val: float) -> Stage2Summary:
        return Stage2Summary(r, [loss], loss, loss, 10, val_loss=val)

    tied = [s2(1, 1e-6, 0.9), s2(2, 1e-6, 0.1), s2(3, 0.2, 0.0)]
    assert select_round(tied, "train_loss", 0.0, "earliest").round == 1
    assert select_round(tied, "train_loss", 0.0, "val_loss").round == 2
    assert select_round(tied, "train_loss", 0.0, "latest").round == 2
    from mixsup.config import load_config

    paper = load_config("small", overrides=["protocol=paper"]).stage2
    assert (paper.select_tolerance, paper.tie_break) == (0.0, "earliest")


def test_a_non_finite_val_score_gives_the_default_threshold_not_nan():
    import numpy as np

    from mixsup.train.results import ValScores
    from mixsup.train.selection import full_sensitivity_threshold, operating_threshold

    assert full_sensitivity_threshold(np.array([0.3, np.nan]), np.array([1, 1])) is None
    thr, source = operating_threshold(ValScores({"a": float("nan"), "b": 0.2}, {"a": 1, "b": 0}))
    assert thr == 0.5 and "default" in source
