"""The image-level baseline: a patch classifier trained by top-k MIL on slide labels only
(Campanella et al. 2019), scored like θ1's maps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixsup.config import Config
from mixsup.methods.mode import Mode

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class TopKMILMode(Mode):
    em_rounds: bool = False
    theta2: bool = False
    section: str = "mil"

    def train(self, ctx: Any, val: Any) -> Any:
        from mixsup.train.api import train_mil

        return train_mil(ctx, self, val)

    def build_theta1(self, cfg: Config, load_weights: bool = True) -> nn.Module:
        from mixsup.models.factory import theta1_classifier

        return theta1_classifier(cfg, load_weights)

    def scorer(self, models: Any, cfg: Config, out: Path, settings: Any) -> Any:
        from mixsup.inference.slide import MapScorer

        return MapScorer(models, cfg, out, settings)
