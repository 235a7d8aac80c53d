"""``--mode abmil``: gated-attention MIL on cached patch features (Ilse et al. 2018), CLAM's
instance clustering loss optional. The encoder stays frozen: its features are computed once
(``inference.features``) and every epoch trains only the small attention head, one slide per
step, positive and negative slides drawn equally often."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch
import torch.nn.functional as F

from mixsup.config import ABMILConfig
from mixsup.config.run import RUN_FIX
from mixsup.dataset.tiles import SlideSet
from mixsup.errors import MixsupError
from mixsup.inference.features import (
    SlideFeatures,
    check_widths,
    extract_features,
    fingerprint,
)
from mixsup.inference.trident_features import fingerprint as trident_fingerprint
from mixsup.inference.trident_features import open_folder
from mixsup.models.abmil import FeatureAttentionNet, ForeignEncoder, GatedAttentionMIL
from mixsup.models.factory import build_embedder, embedding_dim
from mixsup.runtime.device import seed_everything
from mixsup.runtime.progress import progress_bar
from mixsup.storage.artefacts import load_checkpoint_into, save_checkpoint
from mixsup.storage.atomic import write_json
from mixsup.storage.records import to_json
from mixsup.storage.user_files import own_file
from mixsup.train.context import RunContext
from mixsup.train.fit import append_jsonl
from mixsup.train.results import MILSummary, TrainSummary, ValScores
from mixsup.train.selection import operating_threshold

if TYPE_CHECKING:
    from mixsup.methods.registry import Mode

log = logging.getLogger(__name__)


def features_dir(ctx: RunContext) -> Path:
    return Path(ctx.cfg.abmil.features) if ctx.cfg.abmil.features else ctx.run_dir / "features"


def balanced_order(labels: list[int], rng: np.random.Generator) -> list[int]:
    """One epoch's slide order: every slide of the larger class once, the smaller class's
    slides repeated (shuffled, without replacement where they suffice) to as many, mixed."""
    pos = [i for i, y in enumerate(labels) if y == 1]
    neg = [i for i, y in enumerate(labels) if y == 0]
    n = max(len(pos), len(neg))

    def draw(group: list[int]) -> list[int]:
        reps = -(-n // len(group))
        return [int(j) for j in np.concatenate([rng.permutation(group)
                                                for _ in range(reps)])[:n]]

    order = draw(pos) + draw(neg)
    return [order[j] for j in rng.permutation(len(order))]


def bag_loss(head: GatedAttentionMIL, feats: torch.Tensor, label: int,
             cfg: ABMILConfig) -> torch.Tensor:
    logit, weights, h = head(feats)
    loss = F.binary_cross_entropy_with_logits(logit, torch.tensor(float(label)))
    if cfg.instance_loss:
        inst = head.instance_loss(h, weights, label, cfg.instance_k)
        loss = (1 - cfg.instance_weight) * loss + cfg.instance_weight * inst
    return loss


def slide_probabilities(head: GatedAttentionMIL, bags: Sequence[torch.Tensor]) -> list[float]:
    head.eval()
    with torch.inference_mode():
        return [float(torch.sigmoid(head(b)[0])) for b in bags]


@dataclass(frozen=True)
class FittedHead:
    head: GatedAttentionMIL
    losses: list[float]  # per epoch, training bags
    val_losses: list[float]  # per epoch (empty without val bags)
    chosen_epoch: int  # 1-based: the head returned


def fit_head(bags: Sequence[torch.Tensor], labels: list[int], a: ABMILConfig, seed: int,
             val_bags: Sequence[torch.Tensor] = (), val_labels: Sequence[int] = (),
             checkpoint: Path | None = None, progress: bool = False,
             log_epoch: Callable[[dict[str, Any]], None] | None = None) -> FittedHead:
    """The attention head's epochs on feature bags (one bag per step, classes balanced), the
    val loss after each; resumes from ``checkpoint`` and keeps the epoch ``select_epoch``
    names."""
    seed_everything(seed)
    head = GatedAttentionMIL(bags[0].shape[1], a)
    opt = torch.optim.AdamW(head.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    losses, val_losses, start, best = ([], [], 0, None) if checkpoint is None else _resume(
        checkpoint, head, opt)
    for epoch in progress_bar(range(start, a.epochs), desc="ABMIL", unit="epoch",
                              disable=not progress):
        head.train()
        rng = np.random.default_rng((seed, epoch))
        total = []
        for j in balanced_order(labels, rng):
            loss = bag_loss(head, bags[j], labels[j], a)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total.append(loss.item())
        losses.append(float(np.mean(total)))
        if val_bags:
            probs = slide_probabilities(head, val_bags)
            val_losses.append(float(F.binary_cross_entropy(
                torch.tensor(probs).clamp(1e-7, 1 - 1e-7),
                torch.tensor(list(val_labels)).float())))
            if best is None or val_losses[-1] < min(val_losses[:-1]):
                best = {"epoch": epoch + 1, "head": copy.deepcopy(head.state_dict())}
        if log_epoch is not None:
            log_epoch({"event": "abmil_epoch", "epoch": epoch + 1, "loss": losses[-1],
                       "val_loss": val_losses[-1] if val_bags else None})
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"head": head.state_dict(),
                                         "optimiser": opt.state_dict(), "epoch": epoch + 1,
                                         "losses": losses, "val_losses": val_losses,
                                         "best": best, "rng": torch.get_rng_state()})
    chosen = a.epochs
    if a.select_epoch == "val" and best is not None:
        head.load_state_dict(best["head"])
        chosen = int(best["epoch"])
        log.info("ABMIL: keeping epoch %d of %d (lowest val loss %.4f)", chosen, a.epochs,
                 val_losses[chosen - 1])
    return FittedHead(head, losses, val_losses, chosen)


def run_abmil(ctx: RunContext, val: SlideSet | None) -> MILSummary:
    """Features of the labelled train (and val) slides, then the attention head's epochs;
    resumes from the last finished epoch. Writes ``abmil/model.pt``: encoder and head."""
    cfg, a = ctx.cfg, ctx.cfg.abmil
    adir = ctx.run_dir / "abmil"
    if (adir / "summary.json").is_file():
        return MILSummary.read(adir / "summary.json")
    adir.mkdir(parents=True, exist_ok=True)
    labelled = {i: y for i, y in ctx.train.labelled().items()
                if len(ctx.train.tilesets[i].coords)}
    _both_classes(labelled, ctx)
    train_feats = slide_features(ctx, ctx.train, list(labelled))
    val_ids = {i: y for i, y in (val.labelled() if val is not None else {}).items()
               if len(val.tilesets[i].coords)} if val is not None else {}
    val_feats = slide_features(ctx, val, list(val_ids)) if val is not None and val_ids else {}
    if not ctx.dist.main:  # the head trains in seconds: rank 0 alone
        ctx.dist.barrier()
        return MILSummary.read(adir / "summary.json")
    encoder = None if a.features_format == "trident" else build_embedder(a)
    width = check_widths([*train_feats.values(), *val_feats.values()],
                         None if encoder is None else embedding_dim(encoder))
    labelled, val_ids = _with_patches(labelled, train_feats), _with_patches(val_ids, val_feats)
    _both_classes(labelled, ctx)
    ys = list(labelled.values())
    vbags = LazyBags([val_feats[i] for i in val_ids])
    fitted = fit_head(LazyBags([train_feats[i] for i in labelled]), ys, a, cfg.seed, vbags,
                      list(val_ids.values()), adir / "train_last.pt", ctx.progress,
                      lambda row: append_jsonl(ctx.run_dir / "log.jsonl", row))
    head, losses, val_losses = fitted.head, fitted.losses, fitted.val_losses
    chosen = fitted.chosen_epoch
    summary = MILSummary(losses, None, val_losses or None, chosen)
    if vbags:
        probs = slide_probabilities(head, vbags)
        summary = MILSummary(losses, ValScores(
            {val.records[i].slide_id: p for i, p in zip(val_ids, probs, strict=True)}
            if val is not None else {},
            {val.records[i].slide_id: int(y) for i, y in val_ids.items()}
            if val is not None else {}), val_losses, chosen)
    net = FeatureAttentionNet(ForeignEncoder(width) if encoder is None else encoder, head)
    save_checkpoint(adir / "model.pt", {"model": net.state_dict(), "encoder": a.encoder})
    write_json(adir / "summary.json", to_json(summary))
    (adir / "train_last.pt").unlink(missing_ok=True)
    ctx.dist.barrier()
    return summary


def _both_classes(labels: dict[int, int], ctx: RunContext) -> None:
    if set(labels.values()) != {0, 1}:
        raise MixsupError("attention MIL needs positive and negative training slides (with "
                          "patches)", "label both kinds in slides.csv", ctx.data.root)


def _with_patches(labels: dict[int, int], feats: dict[int, SlideFeatures]) -> dict[int, int]:
    """``labels`` of the slides whose features hold patches (TRIDENT may have found none)."""
    for i in labels:
        if not feats[i].n:
            log.warning("%s holds no patches: its slide is left out", feats[i].path)
    return {i: y for i, y in labels.items() if feats[i].n}


def slide_features(ctx: RunContext, slides: SlideSet, which: list[int]
                   ) -> dict[int, SlideFeatures]:
    """The features of ``slides``' ``which`` slides: TRIDENT's files, read as they are
    (``abmil.features_format=trident``), else mixsup's stores, computed where missing."""
    a = ctx.cfg.abmil
    if a.features_format == "trident":
        return dict(open_folder(features_dir(ctx),
                                {i: slides.records[i].slide_id for i in which}))
    return extract_features(slides, which, ctx.cfg, a, features_dir(ctx), ctx.device,
                            ctx.progress, ctx.dist)


def features_fingerprint(ctx: RunContext) -> dict[str, Any]:
    """What the bundle records of its features (``AttentionScorer`` reads it): for TRIDENT's,
    their width and encoder, read back from the training slides' files."""
    if ctx.cfg.abmil.features_format == "trident":
        ids = {i: ctx.train.records[i].slide_id for i in ctx.train.labelled()}
        return trident_fingerprint(list(open_folder(features_dir(ctx), ids).values()))
    return fingerprint(ctx.cfg, ctx.cfg.abmil)


class LazyBags(Sequence[torch.Tensor]):
    """Slides' feature bags, each read from its store when a step needs it (float32), so that
    a dataset's features are not all in memory at once."""

    def __init__(self, stores: list[SlideFeatures]) -> None:
        self.stores = stores

    def __len__(self) -> int:
        return len(self.stores)

    @overload
    def __getitem__(self, i: int) -> torch.Tensor: ...

    @overload
    def __getitem__(self, i: slice) -> list[torch.Tensor]: ...

    def __getitem__(self, i: int | slice) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        return torch.from_numpy(np.asarray(self.stores[i].features, np.float32))


def _resume(path: Path, head: GatedAttentionMIL, opt: torch.optim.Optimizer
            ) -> tuple[list[float], list[float], int, dict[str, Any] | None]:
    """(train losses, val losses, epochs done, the best epoch by val loss and its head)."""
    if not path.is_file():
        return [], [], 0, None
    state = load_checkpoint_into(head, path, RUN_FIX, key="head")
    with own_file(path, "checkpoint", RUN_FIX):
        opt.load_state_dict(state["optimiser"])
        torch.set_rng_state(state["rng"])  # dropout goes on as it would have
        done = (list(state["losses"]), list(state["val_losses"]), int(state["epoch"]),
                state.get("best"))
    log.info("ABMIL: resuming after epoch %d", done[2])
    return done


def train_abmil(ctx: RunContext, spec: Mode, val: SlideSet | None) -> TrainSummary:
    """The abmil mode's trainer (``methods.registry``): the head, then the bundle."""
    from mixsup.methods.bundle import export_bundle
    from mixsup.train.api import theta1_slides

    summary = run_abmil(ctx, val)
    threshold, source = operating_threshold(summary.val)
    bundle = ctx.run_dir / "bundle"
    if ctx.dist.main:
        export_bundle(bundle, ctx.cfg, spec, ctx.run_dir / "abmil" / "model.pt", None, {
            "theta1_slides": theta1_slides(ctx, spec), "selected_round": None,
            "operating_threshold": threshold, "threshold_source": source,
            "abmil_losses": summary.epoch_losses, "abmil_val_losses": summary.val_losses,
            "selected_epoch": summary.selected_epoch,
            "features": str(features_dir(ctx).resolve()),
            "features_fingerprint": features_fingerprint(ctx)})
    return TrainSummary(spec.name, threshold, source, str(bundle),
                        mil_epoch_losses=summary.epoch_losses, skipped_slides=ctx.train.skipped)
