"""Stage 2 after every stage-1 round, the choice of round, and the operating threshold."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from mixsup.artefacts import load_checkpoint, save_checkpoint
from mixsup.atomic import write_json
from mixsup.evaluate.metrics import full_sensitivity_point
from mixsup.mapstore import StoredMaps
from mixsup.models.factory import build_segmenter, build_theta2, theta2_input
from mixsup.runtime import seed_everything
from mixsup.train.context import RunContext, SlideSet
from mixsup.train.fit import append_jsonl, fit
from mixsup.train.rounds import RoundResult, infer_slides, round_dir
from mixsup.train.stage2 import (
    BalancedSlideSampler,
    TopKPatches,
    bce,
    score_slides,
    stage2_loss,
)
from mixsup.train.topk import top_k

log = logging.getLogger(__name__)


def topk_dataset(slides: SlideSet, maps: dict[int, StoredMaps], indices: list[int],
                 k: int, augment: bool, seed: int) -> TopKPatches:
    coords = [maps[i].coords[top_k(maps[i].max_prob, k)] for i in indices]
    labels = [slides.records[i].label or 0 for i in indices]
    t = slides.tilesets[indices[0]]
    return TopKPatches([slides.sources[i] for i in indices], coords, labels, k, t.patch_size,
                       t.mpp, augment=augment, seed=seed)


def run_stage2(ctx: RunContext, res: RoundResult, val: SlideSet | None) -> dict[str, Any]:
    """Train θ2 on the top-K patches of round ``res``; returns its summary (cached on disk)."""
    cfg, s2 = ctx.cfg, ctx.cfg.stage2
    sdir = round_dir(ctx.run_dir, res.round) / "stage2"
    if (sdir / "summary.json").is_file():
        return json.loads((sdir / "summary.json").read_text())
    sdir.mkdir(parents=True, exist_ok=True)
    # The same batch order in every round (and, with stage2.init=encoder, the same
    # initialisation): rounds then differ only in their top-K patches and their θ1 start.
    seed_everything(cfg.seed * 1000 + 500)
    idx = [i for i in ctx.train.labelled() if i in res.maps]
    labels = [ctx.train.records[i].label for i in idx]
    theta1_state = (load_checkpoint(res.model_path, ctx.device)["model"]
                    if s2.init != "encoder" else None)
    model = build_theta2(cfg.model, s2, theta1_state)
    train_ds = topk_dataset(ctx.train, res.maps, idx, s2.top_k, s2.augment, cfg.seed)
    steps = s2.steps_per_epoch or max(1, len(idx) // s2.slides_per_batch)
    sampler = BalancedSlideSampler(labels, s2.slides_per_batch, steps, seed=cfg.seed,
                                   rank=ctx.dist.rank)

    def on_epoch(epoch: int, loss: float) -> None:
        append_jsonl(ctx.run_dir / "log.jsonl", {"event": "stage2_epoch", "round": res.round,
                                                 "epoch": epoch, "loss": loss})

    loss_fn = partial(stage2_loss, smoothing=cfg.training.label_smoothing)
    losses = fit(model, train_ds, sampler, s2.epochs, s2.lr, s2.weight_decay, cfg.runtime,
                 ctx.device, sdir / "train_last.pt", loss_fn=loss_fn, on_epoch=on_epoch,
                 progress=ctx.progress, desc=f"θ2 round {res.round}", dist=ctx.dist,
                 training=cfg.training)
    eval_ds = topk_dataset(ctx.train, res.maps, idx, s2.top_k, False, cfg.seed)
    train_probs = score_slides(model, eval_ds, ctx.device, cfg.runtime, s2.slides_per_batch)
    summary: dict[str, Any] = {
        "round": res.round,
        "epoch_losses": losses,
        "train_curve": float(np.mean(losses)) if losses else float("nan"),
        "train_loss": bce(train_probs, labels),
        "train_slides": len(idx),
    }
    if val is not None and val.labelled():
        summary.update(_validate(ctx, res, model, val))
    if ctx.dist.main:
        save_checkpoint(sdir / "model.pt", {"model": model.state_dict(), "round": res.round,
                                            "encoder": theta2_input(cfg.model, s2)[0],
                                            "init": s2.init})
        write_json(sdir / "summary.json", summary)
        (sdir / "train_last.pt").unlink(missing_ok=True)
    ctx.dist.barrier()
    return summary


def _validate(ctx: RunContext, res: RoundResult, theta2: Any, val: SlideSet) -> dict[str, Any]:
    cfg = ctx.cfg
    theta1 = build_segmenter(cfg.model, load_weights=False)
    theta1.load_state_dict(load_checkpoint(res.model_path)["model"])
    labelled = val.labelled()
    maps, _, _ = infer_slides(theta1, val, list(labelled), round_dir(ctx.run_dir, res.round)
                              / "maps_val", ctx, desc=f"θ1 on val, round {res.round}")
    idx = list(labelled)
    ds = topk_dataset(val, maps, idx, cfg.stage2.top_k, False, cfg.seed)
    probs = score_slides(theta2, ds, ctx.device, cfg.runtime, cfg.stage2.slides_per_batch)
    labels = [labelled[i] for i in idx]
    return {"val_loss": bce(probs, labels),
            "val_scores": {val.records[i].slide_id: float(p) for i, p in zip(idx, probs,
                                                                             strict=True)},
            "val_labels": {val.records[i].slide_id: int(y) for i, y in zip(idx, labels,
                                                                          strict=True)}}


SELECT_KEYS = {"train_curve": "train_curve", "train_loss": "train_loss", "val": "val_loss"}


@dataclass(frozen=True)
class RoundChoice:
    round: int
    criterion: str
    values: dict[int, float]  # round -> criterion value
    tied: tuple[int, ...]  # rounds within the tolerance of the best, the chosen one included
    rule: str  # how the choice was made, for the log and summary.json

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "criterion": self.criterion,
                "values": {str(r): v for r, v in self.values.items()},
                "tied": list(self.tied), "rule": self.rule}


def select_round(summaries: list[dict[str, Any]], select_by: str,
                 tolerance: float = 1e-3) -> RoundChoice:
    """The round whose θ2 learns best by ``select_by``:

    - ``train_curve`` (default): the mean of θ2's per-epoch training losses, the area under its
      training curve. Every round trains θ2 in the same batch order (from the same weights with
      ``stage2.init=encoder``, from its own θ1 otherwise), so the curves differ through the
      top-K patches and θ1's start; unlike the final loss it does not
      saturate when θ2 memorises its few training slides.
    - ``train_loss``: the paper's rule, θ2's final training loss (saturates on small data).
    - ``val``: θ2's loss on the labelled val slides.

    Rounds within ``tolerance`` (absolute) of the best are a tie: it is reported, and broken
    by the val loss where there is one, else toward the later round (more EM refinement).
    """
    key = SELECT_KEYS[select_by]
    values = {int(s["round"]): float(s.get(key, float("nan"))) for s in summaries}
    finite = {r: v for r, v in values.items() if np.isfinite(v)}
    if not finite:
        if select_by == "val":
            raise ValueError("select_by=val needs labelled val slides")
        raise ValueError(f"no round has a finite {key}")
    best = min(finite.values())
    tied = tuple(sorted(r for r, v in finite.items() if v <= best + tolerance))
    if len(tied) == 1:
        return RoundChoice(tied[0], select_by, values, tied, f"lowest {key}")
    by_val = {r: float(s.get("val_loss", float("nan"))) for s in summaries
              if (r := int(s["round"])) in tied}
    if key != "val_loss" and all(np.isfinite(v) for v in by_val.values()):
        chosen = min(sorted(by_val), key=lambda r: by_val[r])
        rule = f"rounds {list(tied)} tie on {key} (within {tolerance:g}); lowest val_loss"
    else:
        chosen = tied[-1]
        rule = f"rounds {list(tied)} tie on {key} (within {tolerance:g}); the latest"
    log.warning("round selection: %s -> round %d", rule, chosen)
    return RoundChoice(chosen, select_by, values, tied, rule)


# Slide scores are means of float32 probabilities, and the same slide scored in a batch (val)
# or alone (predict) can differ in the last bits: the demo's val positives scored 0.75000006 and
# identical test positives 0.75, which a threshold of exactly the lowest val positive missed.
SCORE_TOLERANCE = 1e-6  # relative, about 8 float32 ulps


def full_sensitivity_threshold(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """The largest threshold that keeps every positive at or above it: the lowest positive,
    lowered by ``SCORE_TOLERANCE`` so that the same score from another code path still counts.
    """
    thr, _ = full_sensitivity_point(scores, labels)
    return None if np.isnan(thr) else thr * (1 - SCORE_TOLERANCE)
