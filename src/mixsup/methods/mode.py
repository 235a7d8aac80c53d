"""A training method's typed description: what it trains from, where its θ1 encoder is
configured, and the three things each method provides (its trainer, its θ1 network and its
scorer). A method is a subclass in its own module (``segmenter``, ``topk_mil``, ``abmil``)
whose three methods import its code on first use, so that the commands that only read the
table (``mixsup --help``) start without torch; an editor and mypy follow those imports."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixsup.config import Config, EncoderSpec

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Mode(ABC):
    name: str
    help: str
    em_rounds: bool  # rounds after round 0 draw the EM pools (else the pixel labels alone)
    theta2: bool  # θ2 scores the top-K patches; without it, the mode's own slide score
    section: str  # the config section of θ1's encoder: model (the segmenter), mil, abmil
    # topk.csv's ranking score is a probability, so the mean of the top K is a slide score
    # (θ1 alone); attention weights are not
    ranks_by_probability: bool = True
    # trains on a frozen encoder's cached features (``<section>.features`` names the folder)
    cached_features: bool = False

    @abstractmethod
    def train(self, ctx: Any, val: Any) -> Any:
        """Train a run (``train.context.RunContext``, the val ``SlideSet`` or None) and export
        its bundle; returns the run's ``TrainSummary``."""

    @abstractmethod
    def build_theta1(self, cfg: Config, load_weights: bool = True) -> nn.Module:
        """The bundle's θ1 network (for its weights to be loaded into)."""

    def bundled_theta1(self, bundle: Any) -> nn.Module:
        """The network a bundle's θ1 weights load into (``bundle``: its ``BundleFile``)."""
        return self.build_theta1(bundle.cfg, load_weights=False)

    @abstractmethod
    def scorer(self, models: Any, cfg: Config, out: Path, settings: Any) -> Any:
        """A callable for ``predict``: (slide id, source, tiles) -> (per-patch maps,
        ``SlideScore``), given the loaded ``Bundle`` and the ``InferSettings``."""

    @property
    def segmenter(self) -> bool:
        """θ1 is the segmenter (pixel maps, pixel labels); otherwise a patch model."""
        return self.section == "model"

    def encoder_spec(self, cfg: Config) -> EncoderSpec | None:
        """θ1's encoder spec (None for the segmenter, whose encoder is ``model``'s)."""
        return None if self.segmenter else getattr(cfg, self.section)

    def theta1_input(self, cfg: Config) -> tuple[str, bool]:
        """θ1's (encoder, pretrained): they set its input normalisation."""
        section = getattr(cfg, self.section)
        return section.encoder, section.pretrained

    def map_downsample(self, cfg: Config) -> int:
        """Stored map side = patch side / this: a patch model's map is one value."""
        return cfg.stage1.map_downsample if self.segmenter else cfg.tiling.patch_size

    def top_k(self, cfg: Config) -> int:
        return cfg.stage2.top_k if self.theta2 else int(getattr(cfg, self.section).top_k)
