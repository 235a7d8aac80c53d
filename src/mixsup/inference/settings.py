"""How inference runs: one frozen value instead of six loose arguments."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import torch

from mixsup.config import Config
from mixsup.runtime.device import use_channels_last


@dataclass(frozen=True)
class InferSettings:
    device: torch.device
    batch_size: int = 64
    num_workers: int = 0
    amp: bool = True
    channels_last: bool = True  # what layout=auto gives on CPU
    compile: bool = False
    map_downsample: int = 4  # stored map side = patch side / this (a classifier: 1x1)
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
    from mixsup.inference.cpu_backend import resolve_backend

    return resolve_backend(choice, device)
