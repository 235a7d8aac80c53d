"""Top-K patch selection and the mean-of-K slide probability."""

from __future__ import annotations

import numpy as np
import torch


def top_k(max_prob: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` patches with the highest max pixel probability, best first.

    Ties keep tiling order (stable sort). Slides with fewer than ``k`` patches give them all.
    """
    order = np.argsort(-np.asarray(max_prob, dtype=np.float64), kind="stable")
    return order[:k]


def slide_probability(patch_logits: torch.Tensor) -> torch.Tensor:
    """Mean of the K patch probabilities; ``patch_logits`` is (slides, K)."""
    return torch.sigmoid(patch_logits.float()).mean(dim=1)
