"""Devices, seeds, autocast and model inputs (checkpoints: ``storage.artefacts``)."""

from __future__ import annotations

import logging
import os
import random
from contextlib import nullcontext
from typing import cast

import numpy as np
import torch

from mixsup.config import RuntimeConfig
from mixsup.errors import ConfigError

log = logging.getLogger(__name__)


def pick_device(cfg: RuntimeConfig, local_rank: int = 0) -> torch.device:
    check_runtime(cfg)
    if cfg.threads:
        torch.set_num_threads(_threads(cfg.threads))
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    return torch.device(cfg.device)


WORKERS_PER_CPU = 4  # loader workers beyond this many per CPU only wait (10,000 hang)
MAX_WORKERS = 256


def usable_cpus() -> int:
    """The CPUs this process may run on (a Slurm job's or a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_runtime(cfg: RuntimeConfig) -> None:
    """Refuse a number of loader workers that no machine runs (checked before a run starts);
    fewer, but more than this machine's CPUs use, are clamped by ``loader_workers``, so that a
    run folder or bundle from a larger machine resumes and predicts here."""
    if cfg.num_workers > MAX_WORKERS:
        raise ConfigError(f"runtime.num_workers is {cfg.num_workers}, more than {MAX_WORKERS}",
                          f"set runtime.num_workers to at most {WORKERS_PER_CPU} per CPU "
                          f"({WORKERS_PER_CPU * usable_cpus()} here; a resumed run keeps the "
                          "one in its config.yaml)")


_WARNED: set[tuple[int, int]] = set()


def loader_workers(wanted: int) -> int:
    """``runtime.num_workers``, at most ``WORKERS_PER_CPU`` per usable CPU (with a warning)."""
    limit = WORKERS_PER_CPU * usable_cpus()
    if wanted > limit and (wanted, limit) not in _WARNED:
        _WARNED.add((wanted, limit))  # once per process, not at every epoch's loader
        log.warning("runtime.num_workers is %d but this process may use %d CPUs; using %d "
                    "loader workers", wanted, usable_cpus(), limit)
    return min(wanted, limit)


def _threads(wanted: int) -> int:
    """``runtime.threads``, at most one per CPU (a run folder's config may come from a larger
    machine: clamped with a warning, not refused)."""
    cpus = usable_cpus()
    if wanted > cpus:
        log.warning("runtime.threads is %d but this process may use %d CPUs; using %d threads",
                    wanted, cpus, cpus)
    return min(wanted, cpus)


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
    (benchmarks/bench_layout.py, numbers in docs/benchmarks.md): channels_last, except
    inference on a GPU."""
    if cfg.layout != "auto":
        return cfg.layout == "channels_last"
    if cfg.channels_last:  # the deprecated switch: older configs that set it still get it
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
