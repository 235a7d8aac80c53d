"""θ2: a timm patch classifier with one logit."""

from __future__ import annotations

import timm
from torch import nn


def build_classifier(encoder: str, pretrained: bool = False) -> nn.Module:
    return timm.create_model(encoder, pretrained=pretrained, num_classes=1)
