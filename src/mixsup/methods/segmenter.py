"""The segmenter methods, mixed and pixel: θ1 a segmenter on the pixel labels (with EM rounds
on the slide labels for mixed), θ2 on each slide's top-K patches (Li et al.)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixsup.config import Config
from mixsup.methods.mode import Mode

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class SegmenterMode(Mode):
    theta2: bool = True
    section: str = "model"

    def train(self, ctx: Any, val: Any) -> Any:
        from mixsup.train.api import train_segmenter

        return train_segmenter(ctx, self, val)

    def build_theta1(self, cfg: Config, load_weights: bool = True) -> nn.Module:
        from mixsup.models.factory import theta1_segmenter

        return theta1_segmenter(cfg, load_weights)

    def scorer(self, models: Any, cfg: Config, out: Path, settings: Any) -> Any:
        from mixsup.inference.slide import MapScorer

        return MapScorer(models, cfg, out, settings)
