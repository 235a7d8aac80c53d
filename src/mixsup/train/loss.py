"""Soft-label pixel BCE that ignores unlabelled pixels, and label smoothing for the patch
classifiers."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean BCE over valid pixels; targets may be soft in [0, 1]. 0 when nothing is valid."""
    valid = valid.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (loss * valid).sum() / valid.sum().clamp(min=1.0)


def smooth(label: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Targets ``smoothing / 2`` and ``1 - smoothing / 2``: the loss stops rewarding scores of
    exactly 0 or 1, so slide means stay apart instead of piling up on multiples of 1/K."""
    return label * (1 - smoothing) + smoothing / 2
