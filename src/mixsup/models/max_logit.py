"""θ1 as a patch classifier, the starting point of θ2 with ``stage2.init: theta1``."""

from __future__ import annotations

import torch
from torch import nn


class MaxLogitClassifier(nn.Module):
    """A segmenter whose patch logit is the max of its pixel logit map.

    Before any training, sigmoid of the output is θ1's max pixel probability, the score that
    ranked the top-K patches, so θ2 starts from θ1's slide ranking and fine-tuning on slide
    labels refines it. BatchNorm keeps θ1's statistics (eval mode even while training):
    stage 2's batches hold only top-K patches, unlike the tissue θ1's statistics come from.
    """

    frozen_bn = True  # ``fit`` skips the BatchNorm recalibration for such models

    def __init__(self, segmenter: nn.Module) -> None:
        super().__init__()
        self.segmenter = segmenter

    def train(self, mode: bool = True) -> MaxLogitClassifier:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmenter(x).amax(dim=(-2, -1))  # (B, 1)
