"""Everything a training run needs about its slides, prepared once: tiles, sources, labels."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mixsup.config import Config
from mixsup.dataset.stain_reference import run_stain_reference, with_stain
from mixsup.dataset.tiles import SlideSet, slide_set
from mixsup.errors import MixsupError
from mixsup.inference.settings import InferSettings
from mixsup.labels.regions import SlideAnnotations
from mixsup.labels.table import Dataset
from mixsup.runtime.device import pick_device
from mixsup.runtime.dist import SINGLE, Dist
from mixsup.runtime.progress import phase
from mixsup.slides.stain_normalise import StainReference
from mixsup.train.preflight import CheckedInputs, read_train_annotations
from mixsup.train.subsets import pick_pixel_slides

log = logging.getLogger(__name__)


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
    stain: StainReference | None = None  # every slide set of the run is read on it

    @property
    def graph_dir(self) -> Path:
        """Where the CPU backend caches the graphs of this run's models until it finishes."""
        return self.run_dir / "graphs"

    @property
    def infer(self) -> InferSettings:
        return InferSettings.from_config(self.cfg, self.device, self.graph_dir)


def prepare(data: Dataset, cfg: Config, run_dir: Path, strict: bool = False,
            progress: bool = True, dist: Dist = SINGLE,
            checked: CheckedInputs | None = None) -> RunContext:
    """``checked``: the pixel labels ``check_training`` parsed (read here when not given)."""
    if checked is None:
        checked = read_train_annotations(data.split("train"), cfg, strict)
    with phase(run_dir, "tiling", dist.main):
        train = slide_set(data, ("train",), cfg, run_dir / "tiles", strict, progress, dist)
    with phase(run_dir, "stain reference", dist.main):
        if dist.main:
            stain = run_stain_reference(cfg, train, run_dir)
        dist.barrier()
        if not dist.main:
            stain = run_stain_reference(cfg, train, run_dir, write=False)
    train = with_stain(train, stain)
    if cfg.subset.slide_label_fraction < 1.0:
        train = _drop_slide_labels(train, cfg.subset.slide_label_fraction, cfg.seed)
    if not train.records:
        raise MixsupError("no training slide with tissue",
                          "check slides.csv (split=train) and the tissue previews", data.root)
    annotations = {i: checked.annotations[rec.slide_id] for i, rec in enumerate(train.records)
                   if rec.slide_id in checked.annotations}
    if cfg.subset.pixel_slides is not None:
        kept = pick_pixel_slides({train.records[i].slide_id: train.records[i].label
                                  for i in annotations}, cfg.subset.pixel_slides, cfg.seed)
        annotations = {i: a for i, a in annotations.items() if train.records[i].slide_id in kept}
        log.info("label budget: pixel labels of %d annotated slides kept: %s",
                 len(annotations), ", ".join(sorted(kept)))
    train.skipped.update({f"{sid} (annotations)": why for sid, why in checked.rejected.items()})
    return RunContext(cfg, run_dir, data, train, annotations,
                      pick_device(cfg.runtime, dist.local_rank), progress and dist.main, strict,
                      dist, stain)


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
