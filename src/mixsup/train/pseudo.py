"""The E-step rules of the paper, as pure functions."""

from __future__ import annotations

import numpy as np


def keep_patches(max_prob: np.ndarray, threshold: float) -> np.ndarray:
    """T filter: keep patches whose highest pixel probability reaches ``threshold``."""
    return np.asarray(max_prob) >= threshold


def pseudo_positive(prob: np.ndarray, reweight: float, floor: float) -> np.ndarray:
    """y_p+ = clip(p * V, 0, 1), with values below ``floor`` set to 0."""
    y = np.clip(np.asarray(prob, dtype=np.float32) * reweight, 0.0, 1.0)
    y[y < floor] = 0.0
    return y
