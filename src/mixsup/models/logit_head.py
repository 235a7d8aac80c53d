"""The fresh one-logit head of a timm classifier (the MIL baseline, θ2 with its own encoder).

timm initialises some families' classifier for their ImageNet head: EfficientNet, MobileNet and
their kin draw it from U(-1/√n_out, 1/√n_out) (Google's TF init), which for mixsup's single
logit is U(-1, 1). Over EfficientNet-Lite0's 1,280 pooled features that saturates the logit
before any training (docs/experiments.md): every patch is scored "tumour", the MIL baseline's
first top-k selection is arbitrary and its loss starts far above ln 2. A head drawn from
N(0, 0.01²) with zero bias starts near p = 0.5 on any input, whatever the family.
"""

from __future__ import annotations

from torch import nn

HEAD_STD = 0.01


def reset_logit_head(head: nn.Module, std: float = HEAD_STD) -> None:
    """Re-draw every Linear (and 1×1 convolution) weight of ``head`` from N(0, std²), biases 0."""
    for m in head.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
