"""The three label pools of a round: y_p (fine), y_p+ (pseudo-positive), y_p- (hard negative)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from mixsup.config import Stage1Config
from mixsup.labels.regions import IGNORE, POSITIVE, SlideAnnotations
from mixsup.slides.tiling import TileSet
from mixsup.train.pseudo import keep_patches, pseudo_positive
from mixsup.train.results import NegativeFallback, PoolSizes, PoolStats

log = logging.getLogger(__name__)


class SlideMaps(Protocol):
    """What the E-step rules read of one slide's maps (a store, or a teacher's average)."""

    @property
    def coords(self) -> np.ndarray: ...

    @property
    def max_prob(self) -> np.ndarray: ...

    @property
    def maps(self) -> Any: ...  # indexable (n, m, m) probabilities


@dataclass(frozen=True)
class AveragedMaps:
    coords: np.ndarray
    max_prob: np.ndarray
    maps: np.ndarray


def average_teacher(history: list[Mapping[int, SlideMaps]]) -> dict[int, SlideMaps]:
    """The maps of several rounds averaged pixel by pixel (a steadier teacher than the last
    round alone); a patch's max is the max of its averaged map. Slides whose patches differ
    between rounds keep the last round's maps."""
    last = history[-1]
    out: dict[int, SlideMaps] = {}
    for idx, sm in last.items():
        same = [h[idx] for h in history
                if idx in h and np.array_equal(h[idx].coords, sm.coords)]
        if len(same) < 2 or not len(sm.coords):
            out[idx] = sm
            continue
        mean = np.mean([np.asarray(h.maps[:], np.float32) for h in same], axis=0)
        out[idx] = AveragedMaps(sm.coords, mean.reshape(len(mean), -1).max(1), mean)
    return out


@dataclass(frozen=True)
class Pools:
    """Rows of (slide index, x, y); ``pseudo_maps`` holds the stored maps of the y_p+ rows."""

    fine: np.ndarray
    pseudo: np.ndarray
    pseudo_maps: np.ndarray
    negative: np.ndarray
    stats: PoolStats

    @property
    def sizes(self) -> list[int]:
        return [len(self.fine), len(self.pseudo), len(self.negative)]

    @classmethod
    def fine_only(cls, fine: np.ndarray) -> Pools:
        """Round 0: the pixel labels alone."""
        empty = _empty_refs()
        return cls(fine, empty, np.zeros((0, 1, 1), np.float16), empty,
                   PoolStats(PoolSizes(len(fine), 0, 0)))


def _empty_refs() -> np.ndarray:
    return np.zeros((0, 3), np.int64)


def rows_in(rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Which (slide, x, y) rows of ``rows`` also occur in ``other``."""
    if len(rows) == 0 or len(other) == 0:
        return np.zeros(len(rows), bool)
    both = np.concatenate([rows, other]).astype(np.int64)
    _, inverse = np.unique(both, axis=0, return_inverse=True)
    return np.isin(inverse.ravel()[: len(rows)], inverse.ravel()[len(rows):])


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of either (slide, x, y) array, each once."""
    return np.unique(np.concatenate([a, b]), axis=0)


def fine_refs(tilesets: list[TileSet], annotations: dict[int, SlideAnnotations],
              min_labelled: float) -> np.ndarray:
    """Tissue patches of annotated slides whose labelled fraction reaches ``min_labelled``."""
    rows = []
    for idx, ann in annotations.items():
        tiles = tilesets[idx]
        for x, y in tiles.coords:
            m = ann.rasterize(x, y, 16, 16, tiles.size0 / 16)
            if (m != IGNORE).mean() >= min_labelled:
                rows.append((idx, x, y))
    return np.asarray(rows, np.int64).reshape(-1, 3)


def tumour_first(fine: np.ndarray, tilesets: list[TileSet],
                 annotations: dict[int, SlideAnnotations],
                 patch_size: int) -> tuple[np.ndarray, int]:
    """The fine pool reordered: the patches whose pixel labels hold tumour first (in their
    order), then the rest; and how many hold tumour."""
    holds = np.zeros(len(fine), bool)
    for i, (idx, x, y) in enumerate(fine):
        tiles = tilesets[int(idx)]
        m = annotations[int(idx)].rasterize(int(x), int(y), patch_size, patch_size,
                                            tiles.size0 / patch_size)
        holds[i] = bool((m == POSITIVE).any())
    return np.concatenate([fine[holds], fine[~holds]]), int(holds.sum())


def em_pools(fine: np.ndarray, labels: dict[int, int], maps: Mapping[int, SlideMaps],
             cfg: Stage1Config, rng: np.random.Generator,
             previous_negative: np.ndarray | None = None) -> Pools:
    """Apply the E-step rules to every labelled training slide's maps.

    ``labels`` maps slide index -> 0/1; ``maps`` slide index -> its store. Patches already in
    the fine pool keep their pixel labels and get no pseudo-label (the paper pseudo-labels
    only what nobody annotated). Only the maps of kept patches of positive slides are read
    into memory.
    """
    pos_rows, pos_maps, neg_rows, neg_all = [], [], [], []
    kept = {"positive_slides": 0, "negative_slides": 0}
    for idx, label in labels.items():
        sm = maps[idx]
        rows = np.column_stack([np.full(len(sm.coords), idx), sm.coords]).astype(np.int64)
        unlabelled = ~rows_in(rows, fine)
        keep = unlabelled & keep_patches(
            np.where(unlabelled, sm.max_prob, -1.0), cfg.threshold,
            cfg.positive_keep_top if label == 1 else 0)
        if label == 1:
            pos_rows.append(rows[keep])
            pos_maps.append(sm.maps[keep])
            kept["positive_slides"] += int(keep.any())
        else:
            neg_rows.append(rows[keep])
            neg_all.append(rows[unlabelled])
            kept["negative_slides"] += int(keep.any())
    m = next(iter(maps.values())).maps.shape[-1] if maps else 1
    pseudo = np.concatenate(pos_rows) if pos_rows else _empty_refs()
    pseudo_maps = (np.concatenate(pos_maps) if pos_maps
                   else np.zeros((0, m, m), np.float16))
    negative = np.concatenate(neg_rows) if neg_rows else _empty_refs()
    stats = PoolStats(PoolSizes(0, 0, 0), kept["positive_slides"], kept["negative_slides"],
                      hard_negative_new=len(negative))
    if cfg.keep_negatives and previous_negative is not None and len(previous_negative):
        negative = _union(negative, previous_negative)
    elif previous_negative is not None and len(negative) < 0.25 * len(previous_negative):
        log.warning("hard-negative pool shrank from %d to %d patches: this M-step may forget "
                    "the earlier ones (seen on PCam mosaics: false positives came back); "
                    "--set stage1.keep_negatives=true keeps them", len(previous_negative),
                    len(negative))
        stats = replace(stats, hard_negative_shrank_from=len(previous_negative))

    share = np.asarray(cfg.ratio, float) / sum(cfg.ratio) * cfg.batch_size
    need_neg = int(np.ceil(share[2]))
    if cfg.ratio[2] > 0 and len(negative) < need_neg:
        all_neg = np.concatenate(neg_all) if neg_all else _empty_refs()
        log.warning("hard-negative pool holds %d patches, fewer than one batch's share (%d); "
                    "fallback: %s", len(negative), need_neg, cfg.negative_fallback)
        if cfg.negative_fallback == "previous" and previous_negative is not None:
            negative = _union(negative, previous_negative)
        elif cfg.negative_fallback == "random" and len(all_neg):
            extra = all_neg[rng.choice(len(all_neg), min(len(all_neg), cfg.negative_topup),
                                       replace=False)]
            negative = _union(negative, extra)
        stats = replace(stats, negative_fallback=NegativeFallback(cfg.negative_fallback,
                                                                  len(negative)))
    if cfg.ratio[1] > 0 and len(pseudo) == 0:
        log.warning("pseudo-positive pool is EMPTY: no patch of a positive slide reached "
                    "T=%.2f; this round trains on fine labels and negatives only",
                    cfg.threshold)
        stats = replace(stats, pseudo_positive_collapsed=True)
    if len(pseudo_maps):
        y = pseudo_positive(pseudo_maps, cfg.reweight, cfg.floor)
        stats = replace(stats, pseudo_positive_pixel_fraction=float((y >= 0.5).mean()),
                        pseudo_label_mean=float(y.mean()))
    sizes = PoolSizes(len(fine), len(pseudo), len(negative))
    return Pools(fine, pseudo, pseudo_maps, negative, replace(stats, sizes=sizes))
