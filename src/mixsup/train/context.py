"""Everything a training run needs about its slides, prepared once: tiles, sources, labels."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mixsup.config import Config
from mixsup.dist import SINGLE, Dist
from mixsup.errors import MixsupError
from mixsup.labels.annotations import SlideAnnotations
from mixsup.labels.table import Dataset, SlideRecord
from mixsup.patches import SlideSource
from mixsup.runtime import pick_device
from mixsup.slides.tiling import TileSet
from mixsup.tile_dataset import tile_dataset
from mixsup.train.preflight import CheckedInputs, read_train_annotations


@dataclass
class SlideSet:
    """Slides of one or more splits that have tissue, aligned by index."""

    records: list[SlideRecord]
    tilesets: list[TileSet]
    sources: list[SlideSource]
    skipped: dict[str, str]

    def labelled(self) -> dict[int, int]:
        return {i: r.label for i, r in enumerate(self.records) if r.label is not None}


@dataclass
class RunContext:
    cfg: Config
    run_dir: Path
    data: Dataset
    train: SlideSet
    annotations: dict[int, SlideAnnotations]
    device: torch.device
    progress: bool
    strict: bool
    dist: Dist = SINGLE


def slide_set(data: Dataset, splits: tuple[str, ...], cfg: Config, tiles_dir: Path,
              strict: bool, progress: bool, dist: Dist = SINGLE) -> SlideSet:
    chosen = [r for r in data.slides if r.split in splits]
    report = tile_dataset(Dataset(data.root, tuple(chosen)), cfg, tiles_dir, strict=strict,
                          progress=progress, dist=dist)
    records, tilesets, sources = [], [], []
    for rec in chosen:
        tiles = report.tiles.get(rec.slide_id)
        if tiles is None or len(tiles) == 0:
            continue
        records.append(rec)
        tilesets.append(tiles)
        sources.append(SlideSource(rec.slide_id, str(rec.path), cfg.reader.backend,
                                   cfg.reader.mpp, cfg.reader.cache_bytes))
    skipped = dict(report.skipped)
    skipped.update({s: "no tissue" for s in report.no_tissue})
    return SlideSet(records, tilesets, sources, skipped)


def prepare(data: Dataset, cfg: Config, run_dir: Path, strict: bool = False,
            progress: bool = True, dist: Dist = SINGLE,
            checked: CheckedInputs | None = None) -> RunContext:
    """``checked``: the pixel labels ``check_training`` parsed (read here when not given)."""
    if checked is None:
        checked = read_train_annotations(data.split("train"), cfg, strict)
    train = slide_set(data, ("train",), cfg, run_dir / "tiles", strict, progress, dist)
    if cfg.subset.slide_label_fraction < 1.0:
        train = _drop_slide_labels(train, cfg.subset.slide_label_fraction, cfg.seed)
    if not train.records:
        raise MixsupError("no training slide with tissue",
                          "check slides.csv (split=train) and the tissue previews", data.root)
    annotations = {i: checked.annotations[rec.slide_id] for i, rec in enumerate(train.records)
                   if rec.slide_id in checked.annotations}
    train.skipped.update({f"{sid} (annotations)": why for sid, why in checked.rejected.items()})
    return RunContext(cfg, run_dir, data, train, annotations,
                      pick_device(cfg.runtime, dist.local_rank), progress and dist.main, strict,
                      dist)


def _drop_slide_labels(slides: SlideSet, fraction: float, seed: int) -> SlideSet:
    """Keep the slide labels of a seeded, class-stratified ``fraction`` of the slides.

    Annotated slides keep theirs, so the ablation varies slide labels only.
    """
    rng = np.random.default_rng((seed, 7))
    keep: set[int] = set()
    for label in (0, 1):
        idx = [i for i, r in enumerate(slides.records) if r.label == label]
        n = max(1, round(fraction * len(idx))) if idx else 0
        keep.update(rng.permutation(idx)[:n].tolist())
    records = [r if (i in keep or r.annotation is not None or r.label is None)
               else replace(r, label=None) for i, r in enumerate(slides.records)]
    return SlideSet(records, slides.tilesets, slides.sources, slides.skipped)
