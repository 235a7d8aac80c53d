"""One slide's score from θ1's patch maxima: θ2's mean over the top-K patches, or, for the
image-level baseline, the MIL aggregate of the patch probabilities."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mixsup.config import Config
from mixsup.inference.cpu_backend import inference_model
from mixsup.inference.map_store import MapWriter, StoredMaps
from mixsup.inference.mil import aggregate
from mixsup.inference.patch_maps import map_slide
from mixsup.inference.settings import InferSettings
from mixsup.inference.theta2 import TopKPatches, mean_of_valid, patch_probs
from mixsup.inference.topk import top_k
from mixsup.methods.registry import Mode
from mixsup.slides.patches import SlideSource
from mixsup.slides.tiling import TileSet

if TYPE_CHECKING:
    from mixsup.methods.bundle import Bundle


@dataclass(frozen=True)
class TopKPatch:
    rank: int  # 1 = highest ranking score
    x: int  # level-0 top-left
    y: int
    size: float  # level-0 side
    # the ranking score: θ1's max pixel probability (the image mode: its patch probability;
    # abmil: the patch's attention over the slide's highest)
    max_pixel_prob: float
    patch_prob: float | None  # θ2's (image: its patch classifier's; abmil: the instance's)


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


class MapScorer:
    """The map modes' scorer (``methods.registry``): θ1's maps stream into ``maps/<id>.zarr``,
    then the slide score from its patch maxima."""

    region = "Suspicious (p>=0.5)"  # what the stitched map's >= 0.5 outlines are

    def __init__(self, models: Bundle, cfg: Config, out: Path, settings: InferSettings) -> None:
        self.mode, self.cfg, self.out = models.file.mode, cfg, out
        size = cfg.tiling.patch_size
        # compiled (or exported) once here, not once per slide: map_slide gets the result
        self.theta1 = inference_model(models.theta1.to(settings.device), settings, size)
        self.theta2 = (None if models.theta2 is None else
                       inference_model(models.theta2.to(settings.device), settings, size))
        self.settings = replace(settings, compile=False,
                                map_downsample=self.mode.map_downsample(cfg))

    def __call__(self, slide_id: str, source: SlideSource,
                 tiles: TileSet) -> tuple[StoredMaps, SlideScore]:
        # Maps stream into the store (a few chunks in memory), and everything after reads
        # them back from it, so memory does not grow with the slide.
        maps = map_slide(self.theta1, source, tiles.coords, tiles.patch_size, tiles.mpp,
                         self.settings, open_sink=lambda _i, _n, m: MapWriter(
                             self.out / "maps" / f"{slide_id}.zarr", tiles.coords, m,
                             {"key": tiles.key, "slide_id": slide_id, "size0": tiles.size0}))
        return maps, score_slide(self.mode, self.cfg, self.theta2, source, tiles,
                                 maps.max_prob, self.settings)
