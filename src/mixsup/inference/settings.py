"""How inference runs: one frozen value instead of six loose arguments, and the engine that
runs it on a CPU (``runtime.backend``; the engines themselves: ``cpu_backend``)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import torch

from mixsup.config import Config, RuntimeConfig, Stage1Config
from mixsup.errors import MixsupError
from mixsup.runtime.device import use_channels_last

log = logging.getLogger(__name__)
# The config owns the defaults that settings built without one (tests, benchmarks) fall back on.
_STAGE1, _RUNTIME = Stage1Config(), RuntimeConfig()


@dataclass(frozen=True)
class InferSettings:
    device: torch.device
    batch_size: int = _STAGE1.infer_batch_size
    num_workers: int = 0
    amp: bool = _RUNTIME.amp
    channels_last: bool = True  # what layout=auto gives on CPU
    compile: bool = _RUNTIME.compile
    # stored map side = patch side / this (a classifier: 1x1)
    map_downsample: int = _STAGE1.map_downsample
    backend: str = "torch"  # torch, onnxruntime or openvino (inference.cpu_backend)
    graph_dir: Path | None = None  # where exported graphs are cached (None: not cached)

    @classmethod
    def from_config(cls, cfg: Config, device: torch.device,
                    graph_dir: Path | None = None) -> InferSettings:
        rt = cfg.runtime
        backend = _backend(rt.backend, device)
        return cls(device, cfg.stage1.infer_batch_size, rt.num_workers, rt.amp,
                   backend == "torch" and use_channels_last(rt, device, training=False),
                   rt.compile, cfg.stage1.map_downsample, backend, graph_dir)

    def with_map_downsample(self, map_downsample: int) -> InferSettings:
        return replace(self, map_downsample=map_downsample)


@cache  # decided (and logged) once per process
def _backend(choice: str, device: torch.device) -> str:
    return resolve_backend(choice, device)


# What ``runtime.backend: auto`` picks on a CPU, fastest first (docs/benchmarks.md).
AUTO_ORDER = ("openvino", "onnxruntime")


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def resolve_backend(choice: str, device: torch.device) -> str:
    """The engine that runs inference: ``torch``, ``onnxruntime`` or ``openvino``."""
    if device.type != "cpu" or choice == "torch":
        return "torch"
    if choice == "auto":
        for name in AUTO_ORDER:
            if _installed(name, "onnx"):
                return name
        log.info("runtime.backend=auto: neither openvino nor onnxruntime (with onnx) is "
                 "installed; inference on the CPU runs in PyTorch")
        return "torch"
    if not _installed(choice, "onnx"):
        raise MixsupError(f"runtime.backend={choice} needs the {choice} and onnx packages",
                          f"pip install {choice} onnx, or set runtime.backend=auto")
    return choice
