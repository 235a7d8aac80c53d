"""Stage 2 after every stage-1 round: θ2 trained on the round's top-K patches, with balanced
slide batches and the slide-level loss (the slide score itself: ``inference.theta2``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from mixsup.config import RuntimeConfig
from mixsup.config.run import RUN_FIX
from mixsup.dataset.tiles import SlideSet
from mixsup.inference.stores import map_to_stores
from mixsup.inference.theta2 import score_slides, slide_probs, topk_dataset
from mixsup.models.factory import build_segmenter, build_theta2, theta2_input
from mixsup.runtime.device import seed_everything, use_channels_last
from mixsup.runtime.progress import phase
from mixsup.storage.artefacts import load_checkpoint_into, save_checkpoint
from mixsup.storage.atomic import write_json
from mixsup.storage.records import to_json
from mixsup.train.context import RunContext
from mixsup.train.fit import append_jsonl, fit
from mixsup.train.loss import smooth
from mixsup.train.results import Stage2Summary, ValScores, round_dir
from mixsup.train.rounds import RoundResult
from mixsup.train.sampler import shuffled_cycle

EPS = 1e-6


class BalancedSlideSampler(Sampler[list[int]]):
    """Batches with equal numbers of positive and negative slides.

    With an odd ``slides_per_batch`` the odd slot alternates between the classes from step to
    step (counted across epochs, shifted by rank), so positives and negatives drawn so far
    never differ by more than one.
    """

    def __init__(self, labels: list[int], slides_per_batch: int, steps: int,
                 seed: int = 0, rank: int = 0) -> None:
        self.pos = [i for i, y in enumerate(labels) if y == 1]
        self.neg = [i for i, y in enumerate(labels) if y == 0]
        if not self.pos or not self.neg:
            raise ValueError("stage 2 needs positive and negative training slides")
        self.slides_per_batch = slides_per_batch
        self.steps, self.seed, self.epoch, self.rank = steps, seed, 0, rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch, self.rank))
        pos = (self.pos[j] for j in shuffled_cycle(rng, len(self.pos)))
        neg = (self.neg[j] for j in shuffled_cycle(rng, len(self.neg)))
        for step in range(self.steps):
            odd = (self.epoch * self.steps + step + self.rank) % 2
            n_pos = self.slides_per_batch // 2 + (self.slides_per_batch % 2) * (1 - odd)
            n_neg = self.slides_per_batch - n_pos
            yield [next(pos) for _ in range(n_pos)] + [next(neg) for _ in range(n_neg)]


def stage2_loss(model: torch.nn.Module, batch: Any, device: torch.device,
                runtime: RuntimeConfig, smoothing: float = 0.0) -> torch.Tensor:
    patches, valid, label = batch
    prob = slide_probs(model, patches, valid, device, runtime.amp,
                       use_channels_last(runtime, device, training=True)).clamp(EPS, 1 - EPS)
    y = smooth(label.to(device).float(), smoothing)
    # Written out: F.binary_cross_entropy raises on NaN inputs instead of returning NaN, which
    # ``fit`` turns into NonFiniteLoss with the batch saved.
    return -(y * prob.log() + (1 - y) * (1 - prob).log()).mean()


def bce(probs: np.ndarray, labels: list[int] | np.ndarray) -> float:
    p = np.clip(np.asarray(probs, np.float64), EPS, 1 - EPS)
    y = np.asarray(labels, np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()) if len(p) else float("nan")


def run_stage2(ctx: RunContext, res: RoundResult, val: SlideSet | None) -> Stage2Summary:
    """Train θ2 on the top-K patches of round ``res``; returns its summary (cached on disk)."""
    cfg, s2 = ctx.cfg, ctx.cfg.stage2
    sdir = round_dir(ctx.run_dir, res.round) / "stage2"
    if (sdir / "summary.json").is_file():
        return Stage2Summary.read(sdir / "summary.json")
    sdir.mkdir(parents=True, exist_ok=True)
    # The same batch order in every round (and, with stage2.init=encoder, the same
    # initialisation): rounds then differ only in their top-K patches and their θ1 start.
    seed_everything(cfg.seed * 1000 + 500)
    labelled = ctx.train.labelled()
    idx = [i for i in labelled if i in res.maps]
    labels = [labelled[i] for i in idx]
    theta1_state = None
    if s2.init != "encoder":  # checked against θ1's network before θ2 takes from it
        with torch.random.fork_rng(devices=[]):  # θ2's initialisation draws as before
            theta1 = build_segmenter(cfg.model, load_weights=False)
        theta1_state = load_checkpoint_into(theta1, res.model_path, RUN_FIX)["model"]
    model = build_theta2(cfg.model, s2, theta1_state)
    train_ds = topk_dataset(ctx.train, res.maps, idx, s2.top_k, s2.augment, cfg.seed)
    steps = s2.steps_per_epoch or max(1, len(idx) // s2.slides_per_batch)
    sampler = BalancedSlideSampler(labels, s2.slides_per_batch, steps, seed=cfg.seed,
                                   rank=ctx.dist.rank)

    def on_epoch(epoch: int, loss: float) -> None:
        append_jsonl(ctx.run_dir / "log.jsonl", {"event": "stage2_epoch", "round": res.round,
                                                 "epoch": epoch, "loss": loss})

    loss_fn = partial(stage2_loss, smoothing=cfg.training.label_smoothing)
    with phase(ctx.run_dir, "theta2", ctx.dist.main):
        losses = fit(model, train_ds, sampler, s2.epochs, s2.lr, s2.weight_decay, cfg.runtime,
                     ctx.device, sdir / "train_last.pt", loss_fn=loss_fn, on_epoch=on_epoch,
                     progress=ctx.progress, desc=f"θ2 round {res.round}", dist=ctx.dist,
                     training=cfg.training)
        eval_ds = topk_dataset(ctx.train, res.maps, idx, s2.top_k, False, cfg.seed)
        train_probs = score_slides(model, eval_ds, ctx.infer, s2.slides_per_batch)
    summary = Stage2Summary(res.round, losses, float(np.mean(losses)) if losses else float("nan"),
                            bce(train_probs, labels), len(idx))
    if val is not None and val.labelled():
        with phase(ctx.run_dir, "validation", ctx.dist.main):
            val_loss, scores = _validate(ctx, res, model, val)
        summary = replace(summary, val_loss=val_loss, val=scores)
    if ctx.dist.main:
        save_checkpoint(sdir / "model.pt", {"model": model.state_dict(), "round": res.round,
                                            "encoder": theta2_input(cfg.model, s2)[0],
                                            "init": s2.init})
        write_json(sdir / "summary.json", to_json(summary))
        (sdir / "train_last.pt").unlink(missing_ok=True)
    ctx.dist.barrier()
    return summary


def _validate(ctx: RunContext, res: RoundResult, theta2: torch.nn.Module,
              val: SlideSet) -> tuple[float, ValScores]:
    """θ2's loss on the labelled val slides, and their scores (for the threshold)."""
    cfg = ctx.cfg
    theta1 = build_segmenter(cfg.model, load_weights=False)
    load_checkpoint_into(theta1, res.model_path, RUN_FIX)
    labelled = val.labelled()
    idx = list(labelled)
    maps = map_to_stores(theta1, val, idx, round_dir(ctx.run_dir, res.round) / "maps_val",
                         ctx.infer, ctx.dist, ctx.progress,
                         f"θ1 on val, round {res.round}").maps
    ds = topk_dataset(val, maps, idx, cfg.stage2.top_k)
    probs = score_slides(theta2, ds, ctx.infer, cfg.stage2.slides_per_batch)
    labels = [labelled[i] for i in idx]
    ids = [val.records[i].slide_id for i in idx]
    return bce(probs, labels), ValScores(dict(zip(ids, map(float, probs), strict=True)),
                                         dict(zip(ids, map(int, labels), strict=True)))
