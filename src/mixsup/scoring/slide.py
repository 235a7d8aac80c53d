"""One slide's score from θ1's patch maxima: θ2's mean over the top-K patches, or, for the
image-level baseline, the MIL aggregate of the patch probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mixsup.config import Config
from mixsup.modes import Mode
from mixsup.patches import SlideSource
from mixsup.scoring.mil import aggregate
from mixsup.scoring.settings import InferSettings
from mixsup.scoring.theta2 import TopKPatches, mean_of_valid, patch_probs
from mixsup.scoring.topk import top_k
from mixsup.slides.tiling import TileSet


@dataclass(frozen=True)
class TopKPatch:
    rank: int  # 1 = highest max pixel probability
    x: int  # level-0 top-left
    y: int
    size: float  # level-0 side
    max_pixel_prob: float  # θ1's
    patch_prob: float | None  # θ2's (the image mode: its patch classifier's)


@dataclass(frozen=True)
class SlideScore:
    probability: float
    topk: tuple[TopKPatch, ...]


def score_slide(mode: Mode, cfg: Config, theta2: torch.nn.Module | None, source: SlideSource,
                tiles: TileSet, max_prob: np.ndarray, settings: InferSettings) -> SlideScore:
    """``max_prob``: θ1's max probability of every patch of ``tiles``."""
    order = top_k(max_prob, mode.top_k(cfg))
    if not mode.theta2:
        prob, probs = aggregate(max_prob, cfg.mil), max_prob[order].tolist()
    elif theta2 is None:
        raise ValueError(f"the {mode.name} mode scores slides with θ2")
    elif len(order):
        ds = TopKPatches([source], [tiles.coords[order]], [0], len(order), tiles.patch_size,
                         tiles.mpp)
        prob, probs = _theta2_score(theta2, ds, settings)
    else:  # no tissue patch
        prob, probs = 0.0, []
    return SlideScore(prob, tuple(
        TopKPatch(r + 1, int(tiles.coords[j][0]), int(tiles.coords[j][1]), float(tiles.size0),
                  float(max_prob[j]), float(probs[r]) if r < len(probs) else None)
        for r, j in enumerate(order)))


def _theta2_score(theta2: torch.nn.Module, ds: TopKPatches,
                  settings: InferSettings) -> tuple[float, list[float]]:
    """(slide probability, each top-K patch's probability) from one θ2 pass."""
    patches, valid, _ = ds[0]
    theta2.eval()
    with torch.inference_mode():
        probs = patch_probs(theta2, patches[None], valid[None], settings.device, settings.amp,
                            settings.channels_last)
        slide = float(mean_of_valid(probs, valid[None])[0])
    return slide, probs[0, : int(valid.sum())].cpu().tolist()
