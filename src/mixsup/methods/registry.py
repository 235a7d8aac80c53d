"""The training methods in one table: a typed ``Mode`` object per method. A new method is
one module with a ``Mode`` subclass (its trainer, θ1 network and scorer) plus one line here.

    mixed  θ1 (segmenter) on pixel labels, then EM rounds with slide labels; θ2 on its top K
    pixel  θ1 through mixed's round 0, then the same rounds on pixel labels only; θ2 on its top K
    image  a patch classifier trained by top-k MIL on slide labels (Campanella et al.)
    abmil  gated-attention MIL on a frozen encoder's cached features (Ilse et al., CLAM)
"""

from __future__ import annotations

from mixsup.errors import MixsupError
from mixsup.methods.abmil import ABMILMode
from mixsup.methods.mode import Mode
from mixsup.methods.segmenter import SegmenterMode
from mixsup.methods.topk_mil import TopKMILMode

__all__ = ["MODES", "Mode", "get_mode"]

MODES: dict[str, Mode] = {m.name: m for m in (
    SegmenterMode("mixed", "the method: θ1 on pixel labels, then EM rounds with slide labels, "
                  "then θ2", em_rounds=True),
    SegmenterMode("pixel", "baseline: θ1 on pixel labels only, then θ2", em_rounds=False),
    TopKMILMode("image", "baseline: top-k MIL on slide labels only"),
    ABMILMode("abmil", "baseline: gated-attention MIL on a frozen encoder's cached features, "
              "slide labels only"),
)}


def get_mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise MixsupError(f"unknown mode {name!r}", f"use one of {', '.join(MODES)}") from None
