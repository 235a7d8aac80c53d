"""How inference runs: one frozen value instead of six loose arguments."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from mixsup.config import Config
from mixsup.runtime import use_channels_last


@dataclass(frozen=True)
class InferSettings:
    device: torch.device
    batch_size: int = 64
    num_workers: int = 0
    amp: bool = True
    channels_last: bool = True  # what layout=auto gives on CPU
    compile: bool = False
    map_downsample: int = 4  # stored map side = patch side / this (a classifier: 1x1)

    @classmethod
    def from_config(cls, cfg: Config, device: torch.device) -> InferSettings:
        rt = cfg.runtime
        return cls(device, cfg.stage1.infer_batch_size, rt.num_workers, rt.amp,
                   use_channels_last(rt, device, training=False), rt.compile,
                   cfg.stage1.map_downsample)

    def with_map_downsample(self, map_downsample: int) -> InferSettings:
        return replace(self, map_downsample=map_downsample)
