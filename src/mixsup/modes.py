"""The training modes in one table: what each trains, exports in its bundle and loads.

    mixed  θ1 (segmenter) on pixel labels, then EM rounds with slide labels; θ2 on its top K
    pixel  θ1 through mixed's round 0, then the same rounds on pixel labels only; θ2 on its top K
    image  a patch classifier trained by top-k MIL on slide labels (Campanella et al.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mixsup.config import Config
from mixsup.errors import MixsupError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Mode:
    name: str
    help: str
    em_rounds: bool  # rounds after round 0 draw the EM pools (else the pixel labels alone)
    theta2: bool  # θ2 scores the top-K patches; without it, the MIL aggregate of θ1's

    @property
    def segmenter(self) -> bool:
        """θ1 is the segmenter (pixel maps); otherwise a patch classifier (one probability).
        The two go together: θ2 scores the top-K patches that θ1's pixel maps rank, and
        without pixel maps (the MIL baseline) there is no θ2."""
        return self.theta2

    def theta1_input(self, cfg: Config) -> tuple[str, bool]:
        """θ1's (encoder, pretrained): they set its input normalisation."""
        if self.segmenter:
            return cfg.model.encoder, cfg.model.pretrained
        return cfg.mil.encoder, cfg.mil.pretrained

    def build_theta1(self, cfg: Config, load_weights: bool = True) -> nn.Module:
        # Imported here: the table is read by commands that must start without torch.
        from mixsup.models.factory import build_classifier, build_segmenter

        if self.segmenter:
            return build_segmenter(cfg.model, load_weights)
        return build_classifier(cfg.mil.encoder, cfg.mil.pretrained, load_weights,
                                cfg.mil.weights, spec=cfg.mil)

    def map_downsample(self, cfg: Config) -> int:
        """Stored map side = patch side / this: a classifier's map is one value."""
        return cfg.stage1.map_downsample if self.segmenter else cfg.tiling.patch_size

    def top_k(self, cfg: Config) -> int:
        return cfg.stage2.top_k if self.theta2 else cfg.mil.top_k


MODES = {m.name: m for m in (
    Mode("mixed", "the method: θ1 on pixel labels, then EM rounds with slide labels, then θ2",
         em_rounds=True, theta2=True),
    Mode("pixel", "baseline: θ1 on pixel labels only, then θ2", em_rounds=False, theta2=True),
    Mode("image", "baseline: top-k MIL on slide labels only", em_rounds=False, theta2=False),
)}


def get_mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise MixsupError(f"unknown mode {name!r}", f"use one of {', '.join(MODES)}") from None
