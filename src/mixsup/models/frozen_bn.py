"""BatchNorm in eval mode while the rest of a network trains ("frozen BN").

The MIL baseline trains on batches made only of each slide's top-k patches, then scores every
tissue patch. With train-mode BatchNorm its statistics are those of the top-k patches, which
inference applies to all tissue. Frozen BN keeps the pretrained running statistics throughout;
the affine weights still train. State-dict names are unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Every BatchNorm of ``model`` runs in eval mode in every forward pass, and ``fit`` skips
    its BatchNorm recalibration (``frozen_bn``). Returns ``model``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def _eval_bn(module: nn.Module, args: Any) -> None:
        for bn in bns:
            bn.training = False

    model.register_forward_pre_hook(_eval_bn)
    model.frozen_bn = True  # type: ignore[assignment]
    return model
