"""Slide-level metrics: the 100%-sensitivity point, AUC, sensitivity/specificity and ties."""

from __future__ import annotations

import numpy as np
import pytest

from mixsup.evaluate.metrics import full_sensitivity_point, slide_metrics


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
    assert (m.n_pos, m.n_neg) == (3, 3)
    assert m.auc == pytest.approx(8 / 9)  # one of nine pairs misordered (0.4 < 0.65)
    assert m.threshold_at_full_sensitivity == 0.4
    assert m.specificity_at_full_sensitivity == pytest.approx(2 / 3)
    assert m.sensitivity == pytest.approx(2 / 3) and m.specificity == pytest.approx(2 / 3)
    at_tie = slide_metrics(scores, labels, threshold=0.65)
    assert at_tie.specificity == pytest.approx(2 / 3)  # a score equal to t is positive
    assert m.tied_fraction == 0.0 and m.negatives_at_full_sensitivity_threshold == 0


def test_tied_scores_are_counted():
    """Saturated θ2: slide means on multiples of 1/K tie, and a negative tied with the lowest
    positive sits on the knife edge of the 100%-sensitivity threshold."""
    scores = np.array([1.0, 0.75, 0.75, 0.75, 0.5, 0.0, 0.0, 0.25])
    labels = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    m = slide_metrics(scores, labels, threshold=0.5)
    assert m.tied_fraction == pytest.approx(5 / 8)
    assert m.negatives_at_full_sensitivity_threshold == 0
    edge = slide_metrics(np.array([0.5, 0.5, 0.5 * (1 + 1e-8), 0.1]), np.array([1, 0, 0, 0]), 0.5)
    assert edge.negatives_at_full_sensitivity_threshold == 2


def test_evaluate_refuses_nan_or_non_numeric_probabilities(tmp_path):
    from mixsup.errors import MixsupError
    from mixsup.evaluate.report import evaluate

    labels = tmp_path / "slides.csv"
    labels.write_text("slide_id,label\na,1\nb,0\n")
    pred = tmp_path / "predictions.csv"
    pred.write_text("slide_id,probability,prediction\na,nan,0\nb,0.2,0\n")
    with pytest.raises(MixsupError, match="no finite probability"):
        evaluate(pred, labels, tmp_path / "out")
    pred.write_text("slide_id,probability,prediction\na,high,1\nb,0.2,0\n")
    with pytest.raises(MixsupError, match="line 2"):
        evaluate(pred, labels, tmp_path / "out")
    assert not (tmp_path / "out").exists()
