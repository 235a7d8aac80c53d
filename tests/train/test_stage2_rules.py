from __future__ import annotations

import numpy as np
import pytest
import torch

from mixsup.config import RuntimeConfig
from mixsup.evaluate.metrics import full_sensitivity_point, slide_metrics
from mixsup.train.selection import full_sensitivity_threshold, select_round
from mixsup.train.stage2 import BalancedSlideSampler, bce, slide_probs
from mixsup.train.topk import top_k


def test_top_k_orders_by_max_probability_stably():
    p = np.array([0.1, 0.9, 0.5, 0.9, 0.2])
    assert top_k(p, 3).tolist() == [1, 3, 2]
    assert top_k(p, 10).tolist() == [1, 3, 2, 4, 0]


def test_slide_probability_is_mean_of_k():
    class Logit(torch.nn.Module):  # each patch's logit is its first pixel's red value - 100
        def forward(self, x):  # x in [0, 1]
            return x[:, :1, 0, 0] * 255 - 100

    patches = torch.zeros(2, 2, 1, 1, 3, dtype=torch.uint8)
    patches[..., 0] = torch.tensor([[100, 100], [110, 90]]).view(2, 2, 1, 1)
    valid = torch.ones(2, 2, dtype=torch.bool)
    got = slide_probs(Logit(), patches, valid, torch.device("cpu"), RuntimeConfig(device="cpu"))
    torch.testing.assert_close(got, torch.tensor([0.5, 0.5]))  # sigmoid(0); (sigmoid(±10))/2


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
    summaries = [{"round": 0, "train_loss": 0.3, "val_loss": 0.2},
                 {"round": 1, "train_loss": 0.1, "val_loss": 0.5},
                 {"round": 2, "train_loss": 0.1, "val_loss": 0.4}]
    choice = select_round(summaries, "train_loss")
    assert (choice.round, choice.tied) == (2, (1, 2))  # tie broken by the val loss
    assert "tie" in choice.rule and "val_loss" in choice.rule
    assert select_round(summaries, "val").round == 0
    with pytest.raises(ValueError):
        select_round([{"round": 0, "train_loss": 0.1}], "val")


def test_round_selection_when_theta2_saturates():
    """θ2 memorises every round (final loss at the clip floor): the paper's rule can only tie;
    the training curve still tells the rounds apart and picks the one θ2 learnt fastest."""
    floor = 1.0000005e-06
    summaries = [{"round": 0, "train_loss": floor, "train_curve": 0.41},
                 {"round": 1, "train_loss": floor, "train_curve": 0.22},
                 {"round": 2, "train_loss": floor, "train_curve": 0.30}]
    assert select_round(summaries, "train_curve").round == 1
    paper = select_round(summaries, "train_loss")
    assert paper.tied == (0, 1, 2) and paper.round == 2  # reported, not silently round 0
    assert select_round(summaries, "train_curve", tolerance=0.1).tied == (1, 2)
    assert select_round(summaries, "train_curve").to_json()["values"]["1"] == 0.22


def test_bce():
    assert bce(np.array([0.5, 0.5]), [0, 1]) == pytest.approx(np.log(2))


def test_full_sensitivity_point_with_ties():
    scores = np.array([0.9, 0.6, 0.6, 0.3, 0.6, 0.1])
    labels = np.array([1, 1, 0, 0, 0, 0])
    thr, spec = full_sensitivity_point(scores, labels)
    # the lowest positive is 0.6; the two negatives at 0.6 are called positive
    assert thr == 0.6 and spec == pytest.approx(2 / 4)


def test_slide_metrics_hand_computed():
    scores = np.array([0.95, 0.7, 0.4, 0.65, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    m = slide_metrics(scores, labels, threshold=0.5)
    assert (m["n_pos"], m["n_neg"]) == (3, 3)
    assert m["auc"] == pytest.approx(8 / 9)  # one of nine pairs misordered (0.4 < 0.65)
    assert m["threshold_at_full_sensitivity"] == 0.4
    assert m["specificity_at_full_sensitivity"] == pytest.approx(2 / 3)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    at_tie = slide_metrics(scores, labels, threshold=0.65)
    assert at_tie["specificity"] == pytest.approx(2 / 3)  # a score equal to t is positive
    assert m["tied_fraction"] == 0.0 and m["negatives_at_full_sensitivity_threshold"] == 0


def test_tied_scores_are_counted():
    """Saturated θ2: slide means on multiples of 1/K tie, and a negative tied with the lowest
    positive sits on the knife edge of the 100%-sensitivity threshold."""
    scores = np.array([1.0, 0.75, 0.75, 0.75, 0.5, 0.0, 0.0, 0.25])
    labels = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    m = slide_metrics(scores, labels, threshold=0.5)
    assert m["tied_fraction"] == pytest.approx(5 / 8)
    assert m["negatives_at_full_sensitivity_threshold"] == 0
    edge = slide_metrics(np.array([0.5, 0.5, 0.5 * (1 + 1e-8), 0.1]), np.array([1, 0, 0, 0]), 0.5)
    assert edge["negatives_at_full_sensitivity_threshold"] == 2


def test_predictions_csv_keeps_exact_probabilities(tmp_path):
    from mixsup.evaluate.report import read_predictions
    from mixsup.predict import _write_tables

    p = float(np.float32(0.75) + np.float32(1e-7))  # just above a 6-decimal rounding
    _write_tables(tmp_path, [{"slide_id": "a", "probability": p, "prediction": 1, "topk": []}])
    assert read_predictions(tmp_path / "predictions.csv")["a"] == p


def test_operating_threshold_keeps_ties_from_another_code_path():
    val = np.array([0.7500000596, 0.9, 0.1])  # float32 noise on a tied 0.75 slide
    thr = full_sensitivity_threshold(val, np.array([1, 1, 0]))
    assert 0.75 >= thr > 0.7499  # the same slide scored alone (0.75) is still called positive
    assert thr > 0.1
    assert full_sensitivity_threshold(val, np.array([0, 0, 0])) is None
    tiny = full_sensitivity_threshold(np.array([1e-18, 0.0]), np.array([1, 0]))
    assert 0.0 < tiny <= 1e-18  # relative, so tiny thresholds stay above zero scores


def test_collapse_rule():
    from mixsup.train.rounds import collapsed

    def summary(above: int) -> dict:
        return {"map_stats": {"positive_patches_above_threshold": above}}

    assert collapsed(summary(100), summary(555), 0.2)  # 0.18 of the previous round's
    assert not collapsed(summary(209), summary(555), 0.2)
    assert not collapsed(summary(0), summary(0), 0.2)  # nothing to lose
    assert not collapsed(summary(5), {"map_stats": {}}, 0.2)  # summaries from before the rule
