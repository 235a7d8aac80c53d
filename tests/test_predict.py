"""``mixsup predict``'s tables (the end-to-end runs are in tests/train and tests/reliability)."""

from __future__ import annotations

import numpy as np

from mixsup.evaluate.report import read_predictions
from mixsup.predict import SlidePrediction, _write_tables


def test_predictions_csv_keeps_exact_probabilities(tmp_path):
    p = float(np.float32(0.75) + np.float32(1e-7))  # just above a 6-decimal rounding
    _write_tables(tmp_path, [SlidePrediction("a", "a.tiff", p, 1, 0, ())])
    assert read_predictions(tmp_path / "predictions.csv")["a"] == p
