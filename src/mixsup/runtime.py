"""Devices, seeds and checkpoints (atomic writes, ``weights_only=True`` loads)."""

from __future__ import annotations

import random
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixsup.atomic import atomic_path
from mixsup.config import RuntimeConfig
from mixsup.errors import MixsupError

CHECKPOINT_FORMAT = "mixsup-checkpoint-v1"


def pick_device(cfg: RuntimeConfig, local_rank: int = 0) -> torch.device:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    return torch.device(cfg.device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool):
    if not enabled or device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def to_input(batch: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 NHWC/NCHW batch -> float NCHW in [0, 1] on ``device`` (converted on the device).
    Each model applies its encoder's mean/std itself (``models.encoders.InputNorm``)."""
    x = batch.to(device, non_blocking=True)
    if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def compiled(model: torch.nn.Module, cfg: RuntimeConfig) -> torch.nn.Module:
    """The module to call for forward passes: ``torch.compile``'d when the config asks.

    Callers keep the original module for ``state_dict`` and checkpoints: the compiled wrapper
    shares its parameters but prefixes their names.
    """
    if not cfg.compile:
        return model
    return torch.compile(model, dynamic=False)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    payload = {"format": CHECKPOINT_FORMAT, **state}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a mixsup checkpoint; refuses pickles that would run code and foreign files."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise MixsupError("checkpoint not found", "check the path", path) from exc
    except Exception as exc:
        raise MixsupError(f"refused to load checkpoint ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]})",
                          "only load mixsup checkpoints from sources you trust; this file is "
                          "not a plain weights file", path) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise MixsupError("not a mixsup checkpoint", "pass a file written by mixsup", path)
    return state


def load_weights_into(module: torch.nn.Module, path: str | Path) -> None:
    """Local pretrained weights (.pth / .pt / .safetensors) into ``module``, matching by name."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise MixsupError(f"cannot load weights ({type(exc).__name__})",
                              "pass a state_dict saved with torch.save or safetensors",
                              path) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise MixsupError("no tensor in the file matches the model",
                          "pass timm weights for the configured encoder", path)
    module.load_state_dict(usable, strict=False)
