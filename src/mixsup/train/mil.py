"""``--mode image``: the image-level MIL baseline of Campanella et al. (2019).

Each epoch scores every tissue patch of every labelled training slide with the current patch
classifier (the shared inference path), keeps each slide's top-k patches, and trains on them
with the slide's label. A slide's probability is its max patch probability (or the mean of the
top k).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mixsup.config import RuntimeConfig
from mixsup.dataset.tiles import SlideSet
from mixsup.errors import MixsupError
from mixsup.inference.mil import aggregate
from mixsup.inference.patch_maps import map_slides
from mixsup.inference.settings import InferSettings
from mixsup.inference.topk import top_k
from mixsup.methods.registry import MODES
from mixsup.models.frozen_bn import freeze_batchnorm
from mixsup.runtime.device import autocast, seed_everything, to_input, use_channels_last
from mixsup.runtime.dist import SINGLE, Dist
from mixsup.slides.patches import SlidePool, augment
from mixsup.storage.artefacts import save_checkpoint
from mixsup.storage.atomic import write_json
from mixsup.storage.records import to_json
from mixsup.train.context import RunContext
from mixsup.train.fit import append_jsonl, fit
from mixsup.train.loss import smooth
from mixsup.train.results import MILSummary, ValScores
from mixsup.train.sampler import MixedBatchSampler, default_steps

log = logging.getLogger(__name__)


def mil_selection(scores: dict[int, np.ndarray], coords: dict[int, np.ndarray],
                  labels: dict[int, int], k: int) -> np.ndarray:
    """Rows (slide, x, y, label) of every slide's top-k patches by the current scores, exactly
    k per slide (a slide with fewer patches repeats its ranking), in the order of ``labels``."""
    rows = []
    for i, y in labels.items():
        for j in np.resize(top_k(scores[i], k), k):
            rows.append((i, int(coords[i][j][0]), int(coords[i][j][1]), int(y)))
    return np.asarray(rows, np.int64).reshape(-1, 4)


class SelectedPatches(Dataset):
    """This epoch's selected patches (``refs``, replaced before each epoch)."""

    def __init__(self, slides: SlidePool, rows: np.ndarray, patch_size: int, mpp: float,
                 augment: bool, seed: int) -> None:
        self.slides, self.refs = slides, rows
        self.patch_size, self.mpp = patch_size, mpp
        self.augment, self.seed, self.epoch = augment, seed, 0

    def __len__(self) -> int:
        return len(self.refs)

    def describe(self, indices: list[int]) -> list[dict[str, str | int]]:
        return [self.slides.where(*(int(v) for v in self.refs[i][:3]))
                | {"label": int(self.refs[i][3])} for i in indices]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, x, y, label = (int(v) for v in self.refs[i])
        img = self.slides.read(s, x, y, self.patch_size, self.mpp)
        if self.augment:
            dummy = np.zeros(img.shape[:2], np.float32)
            img, _, _ = augment(img, dummy, dummy, np.random.default_rng((self.seed, self.epoch,
                                                                          i)))
        return torch.from_numpy(img), torch.tensor(float(label))


def mil_loss(model: torch.nn.Module, batch: Any, device: torch.device,
             runtime: RuntimeConfig, smoothing: float = 0.0) -> torch.Tensor:
    img, label = batch
    with autocast(device, runtime.amp):
        logits = model(to_input(img, device, use_channels_last(runtime, device, True)))
    return F.binary_cross_entropy_with_logits(logits.float()[:, 0],
                                              smooth(label.to(device), smoothing))


def score_patches(model: torch.nn.Module, slides: SlideSet, which: list[int],
                  settings: InferSettings, progress: bool, desc: str,
                  dist: Dist = SINGLE) -> dict[int, np.ndarray]:
    """Patch probabilities of every tissue patch; under torchrun each rank scores a shard."""
    jobs = dist.shard([(i, slides.tilesets[i].coords) for i in which])
    t = slides.tilesets[which[0]]
    out = map_slides(model, slides.sources, jobs, t.patch_size, t.mpp,
                     settings.with_map_downsample(t.patch_size), progress=progress, desc=desc)
    scores: dict[int, np.ndarray] = {}
    for part in dist.all_gather({i: maps.max_prob for i, maps in out}):
        scores.update(part)
    return scores


def run_mil(ctx: RunContext, val: SlideSet | None) -> MILSummary:
    """Train the MIL classifier as Campanella et al.: before every epoch the current model
    scores every tissue patch of every labelled training slide, and the epoch trains on each
    slide's top-k patches, in batches holding as many patches of positive as of negative
    slides. One ``fit`` carries the optimiser, schedule, checkpoints (resume re-scores with the
    restored model) and the final BatchNorm recalibration across epochs."""
    cfg, m = ctx.cfg, ctx.cfg.mil
    mdir = ctx.run_dir / "mil"
    if (mdir / "summary.json").is_file():
        return MILSummary.read(mdir / "summary.json")
    mdir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    model = MODES["image"].build_theta1(cfg).to(ctx.device)
    if m.batchnorm == "frozen":
        freeze_batchnorm(model)
    labelled = {i: y for i, y in ctx.train.labelled().items()
                if len(ctx.train.tilesets[i].coords)}
    # positives first: the sampler's two pools are the first and second block of rows
    labels = dict(sorted(labelled.items(), key=lambda t: -t[1]))
    n_pos = sum(labels.values())
    if n_pos == 0 or n_pos == len(labels):
        raise MixsupError("the MIL baseline needs positive and negative training slides",
                          "label both kinds in slides.csv", ctx.data.root)
    coords = {i: ctx.train.tilesets[i].coords for i in labels}
    t = ctx.train.tilesets[next(iter(labels))]
    ds = SelectedPatches(SlidePool(ctx.train.sources), np.zeros((0, 4), np.int64),
                         t.patch_size, t.mpp, m.augment, cfg.seed)
    sizes = [m.top_k * n_pos, m.top_k * (len(labels) - n_pos)]
    steps = m.steps_per_epoch or default_steps(sizes, m.batch_size)
    sampler = MixedBatchSampler(sizes, (1.0, 1.0), m.batch_size, steps, seed=cfg.seed,
                                rank=ctx.dist.rank, world_size=ctx.dist.world)

    def select(epoch: int) -> None:
        scores = score_patches(model, ctx.train, list(labels), ctx.infer, ctx.progress,
                               f"MIL scoring, epoch {epoch + 1}", ctx.dist)
        ds.refs = mil_selection(scores, coords, labels, m.top_k)

    def on_epoch(epoch: int, loss: float) -> None:
        append_jsonl(ctx.run_dir / "log.jsonl", {"event": "mil_epoch", "epoch": epoch,
                                                 "loss": loss})

    losses = fit(model, ds, sampler, m.epochs, m.lr, m.weight_decay, cfg.runtime, ctx.device,
                 mdir / "train_last.pt",
                 loss_fn=partial(mil_loss, smoothing=cfg.training.label_smoothing),
                 on_epoch=on_epoch, progress=ctx.progress, desc="MIL", dist=ctx.dist,
                 training=cfg.training, before_epoch=select)
    summary = MILSummary(losses)
    if val is not None and val.labelled():
        vl = val.labelled()
        vs = score_patches(model, val, list(vl), ctx.infer, False, "MIL on val", ctx.dist)
        summary = MILSummary(losses, ValScores(
            {val.records[i].slide_id: aggregate(vs[i], m) for i in vl},
            {val.records[i].slide_id: int(y) for i, y in vl.items()}))
    if ctx.dist.main:
        save_checkpoint(mdir / "model.pt", {"model": model.state_dict(), "encoder": m.encoder})
        write_json(mdir / "summary.json", to_json(summary))
        (mdir / "train_last.pt").unlink(missing_ok=True)
    ctx.dist.barrier()
    return summary


def mil_model_path(run_dir: Path) -> Path:
    return run_dir / "mil" / "model.pt"
