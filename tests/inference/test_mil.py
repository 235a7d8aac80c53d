"""The image-level (MIL) baseline's slide score."""

from __future__ import annotations

import numpy as np
import pytest

from mixsup.config import MILConfig
from mixsup.inference.mil import aggregate


def test_mil_aggregation():
    p = np.array([0.2, 0.9, 0.4])
    assert aggregate(p, MILConfig(aggregation="max")) == pytest.approx(0.9)
    assert aggregate(p, MILConfig(aggregation="mean_topk", top_k=2)) == pytest.approx(0.65)
    assert aggregate(np.zeros(0), MILConfig()) == 0.0  # a slide without tissue patches
