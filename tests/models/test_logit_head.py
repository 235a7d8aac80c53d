"""A fresh one-logit classifier starts undecided (issue: the Campanella baseline did not learn).

timm's EfficientNet init draws a one-output head from U(-1, 1): before the fix the small
preset's MIL classifier scored H&E-like patches at logit 12 on average (up to 41), sigmoid
0.99998, so its first top-k selection was arbitrary and its loss started far above ln 2.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixsup.models.factory import build_classifier
from mixsup.models.logit_head import HEAD_STD


def _he_like_patches(n: int = 16, side: int = 64) -> torch.Tensor:
    """Pink-purple noise around H&E colours, in [0, 1]."""
    rng = np.random.default_rng(0)
    base = np.array([0.85, 0.6, 0.8], np.float32)[:, None, None]
    x = base + rng.normal(0, 0.12, (n, 3, side, side)).astype(np.float32)
    return torch.from_numpy(np.clip(x, 0, 1))


@pytest.mark.parametrize("encoder,pretrained", [("efficientnet_lite0", True),
                                                ("efficientnet_lite0", False),
                                                ("dla34", False), ("resnet18", False)])
def test_fresh_classifier_starts_near_half(encoder: str, pretrained: bool):
    torch.manual_seed(0)
    model = build_classifier(encoder, pretrained=pretrained).eval()
    with torch.no_grad():
        logits = model(_he_like_patches())[:, 0]
    # before the fix: efficientnet_lite0 (packaged ImageNet weights) gave |logit| up to ~40
    assert float(logits.abs().max()) < 2.0
    head = model.get_classifier()
    assert float(head.weight.detach().std()) == pytest.approx(HEAD_STD, rel=0.2)
    assert float(head.bias.detach().abs().max()) == 0.0
