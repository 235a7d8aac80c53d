"""Top-K patch selection (the mean-of-K slide probability is ``inference.theta2.mean_of_valid``)."""

from __future__ import annotations

import numpy as np


def top_k(max_prob: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` patches with the highest max pixel probability, best first.

    Ties keep tiling order (stable sort). Slides with fewer than ``k`` patches give them all.
    """
    order = np.argsort(-np.asarray(max_prob, dtype=np.float64), kind="stable")
    return order[:k]

