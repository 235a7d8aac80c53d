"""The image-level (MIL) baseline's slide score: the max, or the mean of the top k, of its
patch probabilities."""

from __future__ import annotations

import numpy as np

from mixsup.config import MILConfig
from mixsup.inference.topk import top_k


def aggregate(patch_probs: np.ndarray, cfg: MILConfig) -> float:
    if len(patch_probs) == 0:
        return 0.0
    if cfg.aggregation == "max":
        return float(np.max(patch_probs))
    return float(np.mean(np.asarray(patch_probs)[top_k(patch_probs, cfg.top_k)]))
