"""Freeze a segmenter encoder's early stages: their weights and BatchNorm statistics stay as
loaded, and no gradient flows through them, which removes the costliest part of the backward
pass (the convolutions at the highest resolution)."""

from __future__ import annotations

from typing import Any

from torch import nn

from mixsup.errors import MixsupError

FROZEN = "mixsup_frozen"  # the attribute that marks a frozen BatchNorm (``recalibrate_bn``)


def freeze_early_stages(encoder: nn.Module, stages: int, name: str) -> None:
    """Freeze every parameter of a timm ``features_only`` ``encoder`` that computes its first
    ``stages`` output maps (the stem included). ``name`` is the encoder's, for the error."""
    if stages <= 0:
        return
    info: Any = getattr(encoder, "feature_info", None)
    outputs = list(getattr(info, "out_indices", ()) or ())
    if info is None or stages > len(outputs):
        raise MixsupError(f"model.freeze_stages={stages} but encoder {name!r} has "
                          f"{len(outputs)} feature stages",
                          f"set model.freeze_stages between 0 and {len(outputs)}")
    modules = list(encoder.named_modules())
    names = [n for n, _ in modules]
    stage = info.module_name(outputs[stages - 1])
    if stage not in names:  # timm flattens nested names for some models (stages.0 -> stages_0)
        stage = stage.replace(".", "_")
    if stage not in names:
        raise MixsupError(f"encoder {name!r}: cannot find its stage {stage!r}",
                          "set model.freeze_stages=0 for this encoder")
    last = max(i for i, n in enumerate(names) if n == stage or n.startswith(stage + "."))
    frozen = [m for _, m in modules[1:last + 1]]  # [0] is the encoder itself
    for module in frozen:
        for tensor in module.parameters(recurse=False):
            tensor.requires_grad_(False)
    bns = [m for m in frozen if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        setattr(bn, FROZEN, True)

    def _eval_frozen(module: nn.Module, args: Any) -> None:
        for bn in bns:
            bn.training = False

    encoder.register_forward_pre_hook(_eval_frozen)
