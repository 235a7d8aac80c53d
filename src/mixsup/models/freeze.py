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
    ``stages`` feature maps (the stem included). ``name`` is the encoder's, for the error."""
    if stages <= 0:
        return
    info: Any = getattr(encoder, "feature_info", None)
    if info is None or stages > len(info):
        n = 0 if info is None else len(info)
        raise MixsupError(f"model.freeze_stages={stages} but encoder {name!r} has {n} feature "
                          "stages", f"set model.freeze_stages between 0 and {n}")
    last = info.module_name(stages - 1)
    params = list(encoder.named_parameters())
    ends = [i for i, (p, _) in enumerate(params) if p == last or p.startswith(last + ".")]
    if not ends:
        raise MixsupError(f"encoder {name!r}: cannot find the parameters of its stage {last!r}",
                          "set model.freeze_stages=0 for this encoder")
    frozen = {p for p, _ in params[:ends[-1] + 1]}
    for p, tensor in params:
        if p in frozen:
            tensor.requires_grad_(False)
    bns = [m for n, m in encoder.named_modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and all(f"{n}.{q}" in frozen for q, _ in m.named_parameters())
           and any(True for _ in m.parameters())]
    for bn in bns:
        setattr(bn, FROZEN, True)

    def _eval_frozen(module: nn.Module, args: Any) -> None:
        for bn in bns:
            bn.training = False

    encoder.register_forward_pre_hook(_eval_frozen)
