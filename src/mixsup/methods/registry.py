"""The training modes in one table: what each trains, exports in its bundle and loads.

    mixed  θ1 (segmenter) on pixel labels, then EM rounds with slide labels; θ2 on its top K
    pixel  θ1 through mixed's round 0, then the same rounds on pixel labels only; θ2 on its top K
    image  a patch classifier trained by top-k MIL on slide labels (Campanella et al.)
    abmil  gated-attention MIL on a frozen encoder's cached features (Ilse et al., CLAM)

A row names where its code lives (``module:attribute``, imported on first use, so that the
commands reading the table start without torch). A new mode is one module with those three
things plus one row here:

    trainer(ctx, mode, val) -> TrainSummary      trains, exports ``run/bundle``
    builder(cfg, load_weights) -> nn.Module      the bundle's θ1 network, for its weights
    scorer(models, cfg, out, settings)           a callable: (slide id, source, tiles) ->
                                                 (per-patch maps, ``SlideScore``)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mixsup.config import Config, EncoderSpec
from mixsup.errors import MixsupError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Mode:
    name: str
    help: str
    em_rounds: bool  # rounds after round 0 draw the EM pools (else the pixel labels alone)
    theta2: bool  # θ2 scores the top-K patches; without it, the mode's own slide score
    section: str  # the config section of θ1's encoder: model (the segmenter), mil, abmil
    trainer: str
    builder: str
    scorer: str
    # topk.csv's ranking score is a probability, so the mean of the top K is a slide score
    # (θ1 alone); attention weights are not
    ranks_by_probability: bool = True
    # trains on a frozen encoder's cached features (``<section>.features`` names the folder)
    cached_features: bool = False

    @property
    def segmenter(self) -> bool:
        """θ1 is the segmenter (pixel maps, pixel labels); otherwise a patch model."""
        return self.section == "model"

    def load(self, what: str) -> Any:
        """The object a ``module:attribute`` field names."""
        module, _, attr = getattr(self, what).partition(":")
        return getattr(importlib.import_module(module), attr)

    def encoder_spec(self, cfg: Config) -> EncoderSpec | None:
        """θ1's encoder spec (None for the segmenter, whose encoder is ``model``'s)."""
        return None if self.segmenter else getattr(cfg, self.section)

    def theta1_input(self, cfg: Config) -> tuple[str, bool]:
        """θ1's (encoder, pretrained): they set its input normalisation."""
        section = getattr(cfg, self.section)
        return section.encoder, section.pretrained

    def build_theta1(self, cfg: Config, load_weights: bool = True) -> nn.Module:
        return self.load("builder")(cfg, load_weights)

    def map_downsample(self, cfg: Config) -> int:
        """Stored map side = patch side / this: a patch model's map is one value."""
        return cfg.stage1.map_downsample if self.segmenter else cfg.tiling.patch_size

    def top_k(self, cfg: Config) -> int:
        return cfg.stage2.top_k if self.theta2 else int(getattr(cfg, self.section).top_k)


def _segmenter(name: str, help: str, em_rounds: bool) -> Mode:
    return Mode(name, help, em_rounds, theta2=True, section="model",
                trainer="mixsup.train.api:train_segmenter",
                builder="mixsup.models.factory:theta1_segmenter",
                scorer="mixsup.inference.slide:MapScorer")


MODES = {m.name: m for m in (
    _segmenter("mixed", "the method: θ1 on pixel labels, then EM rounds with slide labels, "
               "then θ2", em_rounds=True),
    _segmenter("pixel", "baseline: θ1 on pixel labels only, then θ2", em_rounds=False),
    Mode("image", "baseline: top-k MIL on slide labels only", em_rounds=False, theta2=False,
         section="mil", trainer="mixsup.train.api:train_mil",
         builder="mixsup.models.factory:theta1_classifier",
         scorer="mixsup.inference.slide:MapScorer"),
    Mode("abmil", "baseline: gated-attention MIL on a frozen encoder's cached features, slide "
         "labels only", em_rounds=False, theta2=False, section="abmil",
         trainer="mixsup.train.abmil:train_abmil", builder="mixsup.models.abmil:build_bundled",
         scorer="mixsup.inference.attention:AttentionScorer", ranks_by_probability=False,
         cached_features=True),
)}


def get_mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise MixsupError(f"unknown mode {name!r}", f"use one of {', '.join(MODES)}") from None
