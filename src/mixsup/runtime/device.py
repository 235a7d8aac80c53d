"""Devices, seeds, autocast and model inputs (checkpoints: ``storage.artefacts``)."""

from __future__ import annotations

import random
from contextlib import nullcontext
from typing import cast

import numpy as np
import torch

from mixsup.config import RuntimeConfig


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


def use_channels_last(cfg: RuntimeConfig, device: torch.device, training: bool) -> bool:
    """The input layout of a pass. ``layout: auto`` takes the one measured faster
    (benchmarks/bench_layout.py): channels_last, except inference on a GPU. DLA34-up at 512 px,
    bf16, H100: training 243 patches/s in channels_last vs 158 in NCHW, inference 557 vs 616;
    on CPU channels_last was faster both ways (benchmarks/results)."""
    if cfg.layout != "auto":
        return cfg.layout == "channels_last"
    if cfg.channels_last:  # the pre-0.2 switch
        return True
    return training or device.type != "cuda"


def to_input(batch: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 NHWC/NCHW batch -> float NCHW in [0, 1] on ``device`` (converted on the device),
    in channels_last memory or plain NCHW memory. Each model applies its encoder's mean/std
    itself (``models.encoders.InputNorm``)."""
    x = batch.to(device, non_blocking=True)
    if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    # The permuted loader batch is channels_last already; NCHW costs a copy on the device.
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return x.float().div_(255.0).contiguous(memory_format=layout)


def compiled(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """The module to call for forward passes: ``torch.compile``'d when the config asks.

    Callers keep the original module for ``state_dict`` and checkpoints: the compiled wrapper
    shares its parameters but prefixes their names.
    """
    if not enabled:
        return model
    # torch.compile is typed for any callable; given a Module it returns an OptimizedModule.
    return cast(torch.nn.Module, torch.compile(model, dynamic=False))
