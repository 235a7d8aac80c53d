"""Stage 1: initialisation on pixel labels (round 0), then EM rounds of E-step and M-step.

Each round's folder is complete once its ``summary.json`` exists:

    round_r/model.pt        θ1 after round r
    round_r/pools.json      pool sizes and pseudo-label statistics used to train it
    round_r/maps/*.zarr     θ1(round r) over every labelled training slide: the E-step of r+1
    round_r/summary.json    losses, pools, timings (written last)

``resume`` continues from the last finished epoch or slide, redoing nothing that finished.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mixsup.config import Stage1Config
from mixsup.config.run import RUN_FIX
from mixsup.errors import MixsupError
from mixsup.inference.map_store import StoredMaps, open_maps
from mixsup.inference.stores import MapStores, map_to_stores
from mixsup.models.factory import build_segmenter
from mixsup.runtime.device import seed_everything
from mixsup.runtime.progress import phase
from mixsup.storage.artefacts import (
    load_arrays,
    load_checkpoint,
    load_checkpoint_into,
    save_arrays,
    save_checkpoint,
)
from mixsup.storage.atomic import write_json
from mixsup.storage.records import to_json
from mixsup.storage.user_files import own_file
from mixsup.train.context import RunContext
from mixsup.train.dataset import MixedPatches
from mixsup.train.fit import append_jsonl, fit
from mixsup.train.pools import Pools, average_teacher, em_pools, fine_refs, tumour_first
from mixsup.train.results import MapStats, RoundSummary, round_dir
from mixsup.train.sampler import MixedBatchSampler, batch_counts, split_first_pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundResult:
    round: int
    model_path: Path
    maps: dict[int, StoredMaps]  # slide index -> its E-step store
    summary: RoundSummary


def run_stage1(ctx: RunContext, em: bool = True) -> list[RoundResult]:
    """Round 0 and ``stage1.rounds`` rounds after it. With ``em`` (mixed mode) rounds >= 1 are
    EM rounds; without it (pixel mode) they continue on the pixel labels alone with the same
    steps, learning rate and seeds, so that round 0 is the same checkpoint in both modes and
    every later round differs only by what the E-step added.

    A collapsed round (see ``collapsed``) is kept in the results, marked, and with
    ``on_collapse=rollback`` the next round warm-starts from, and runs its E-step on, the last
    round that did not collapse. The E-step after a round runs only where its maps are used:
    the next EM round's pools, or stage 2 of a round that round selection may choose."""
    s1 = ctx.cfg.stage1
    rounds = s1.rounds
    labelled = ctx.train.labelled()
    fine = fine_refs(ctx.train.tilesets, ctx.annotations, s1.min_labelled)
    limit = ctx.cfg.subset.max_fine_patches
    if limit is not None and len(fine) > limit:
        rng = np.random.default_rng((ctx.cfg.seed, 11))
        fine = fine[np.sort(rng.choice(len(fine), limit, replace=False))]
    if len(fine) == 0:
        raise MixsupError("no pixel-labelled training patch",
                          "add annotations/<slide_id>.geojson (Tumor outlines, optionally an "
                          "ROI) for some train slides", ctx.data.root)
    log.info("fine-label pool: %d patches from %d annotated slides", len(fine),
             len(ctx.annotations))
    fine_tumour = 0
    if s1.fine_tumour_share is not None:
        fine, fine_tumour = tumour_first(fine, ctx.train.tilesets, ctx.annotations,
                                         ctx.cfg.tiling.patch_size)
        log.info("fine-label pool: %d of %d patches hold tumour; they get %.0f%% of its draws",
                 fine_tumour, len(fine), 100 * s1.fine_tumour_share)
        if not 0 < fine_tumour < len(fine):
            log.warning("stage1.fine_tumour_share has no effect: %s of the fine-label patches "
                        "hold tumour", "none" if fine_tumour == 0 else "all")
    results: list[RoundResult] = []
    previous: RoundResult | None = None
    previous_negative = None
    for r in range(rounds + 1):
        rdir = round_dir(ctx.run_dir, r)
        done = rdir / "summary.json"
        if done.is_file():
            result = _load_round(ctx, r, labelled, needs_maps(r, rounds, em,
                                                              ctx.cfg.stage2.include_round0))
            log.info("round %d already finished; reusing it", r)
        else:
            result = _run_round(ctx, r, fine, fine_tumour, labelled, previous,
                                previous_negative, em,
                                [res for res in results if not res.summary.collapsed])
        neg_path = rdir / "negatives.npy"
        if neg_path.is_file():
            with own_file(neg_path, "hard negatives", RUN_FIX):
                previous_negative = load_arrays(neg_path)["array"]
        results.append(result)
        if previous is not None and collapsed(result.summary, previous.summary,
                                              s1.collapse_ratio):
            result = replace(result, summary=replace(result.summary, collapsed=True))
            results[-1] = result
            action = (f"; rolling back to round {previous.round}"
                      if s1.on_collapse == "rollback" else "")
            log.warning("round %d COLLAPSED: its E-step finds %d patches >= T on positive "
                        "slides (round %d: %d)%s. Fix: lower stage1.round_lr, or keep more "
                        "pseudo-positives (stage1.ratio)", r, _above(result.summary),
                        previous.round, _above(previous.summary), action)
            if s1.on_collapse == "rollback":
                continue
        previous = result
    if ctx.dist.main:
        write_json(ctx.run_dir / "stage1.json",
                   {"rounds": [to_json(res.summary) for res in results]})
    return results


def needs_maps(r: int, rounds: int, em: bool, include_round0: bool) -> bool:
    """Whether round ``r``'s E-step is used: by the next EM round's pools, or by stage 2 of a
    round that selection can choose (``selectable``)."""
    return (em and r < rounds) or selectable(r, rounds, include_round0)


def selectable(r: int, rounds: int, include_round0: bool) -> bool:
    """Round selection runs among rounds 1..N (the paper's), round 0 only when asked or when
    there is no other."""
    return r >= 1 or include_round0 or rounds == 0


def selection_candidates(collapsed_by_round: dict[int, bool], rounds: int, include_round0: bool,
                         on_collapse: str) -> list[int]:
    """The rounds that round selection chooses among. A collapsed round is left out only
    with ``on_collapse=rollback``; with ``warn`` (the paper's: no rollback) it stays
    selectable. Round 0 stands in when no other round is left."""
    keep = [r for r, gone in sorted(collapsed_by_round.items())
            if selectable(r, rounds, include_round0)
            and not (gone and on_collapse == "rollback")]
    return keep or [min(collapsed_by_round)]


def theta1_steps(s1: Stage1Config, n_fine: int, r: int) -> int:
    """Optimiser steps per epoch of θ1's round ``r``, the same in every mode: ``steps_per_epoch``
    when set; otherwise one pass over the fine pool, at the share of it a round-r batch holds
    (all of it in round 0, ``ratio``'s share in later rounds, whatever the mode draws)."""
    if s1.steps_per_epoch is not None:
        return s1.steps_per_epoch
    per_batch = s1.batch_size if r == 0 else batch_counts(s1.batch_size, s1.ratio)[0]
    return max(1, math.ceil(n_fine / max(per_batch, 1)))


def _above(summary: RoundSummary) -> int:
    return summary.map_stats.positive_patches_above_threshold


def collapsed(summary: RoundSummary, previous: RoundSummary, ratio: float) -> bool:
    """θ1 stopped firing on positive slides: its E-step finds fewer patches >= T there than
    ``ratio`` times the previous round's (the pseudo-positive pool of the next round would
    collapse with it)."""
    return _above(summary) < ratio * _above(previous)


def stage1_lr(s1: Stage1Config, r: int) -> float:
    """Round 0 trains at ``lr``; the warm-started M-steps at ``round_lr`` when set."""
    return s1.lr if r == 0 or s1.round_lr is None else s1.round_lr


def _run_round(ctx: RunContext, r: int, fine: np.ndarray, fine_tumour: int,
               labelled: dict[int, int], previous: RoundResult | None,
               previous_negative: np.ndarray | None, em: bool,
               history: list[RoundResult]) -> RoundResult:
    """``fine_tumour``: the fine pool's first rows that hold tumour (``tumour_first``)."""
    cfg, s1 = ctx.cfg, ctx.cfg.stage1
    rdir = round_dir(ctx.run_dir, r)
    rdir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed * 1000 + r)
    rng = np.random.default_rng((cfg.seed, r))
    t0 = time.perf_counter()
    epochs = s1.epochs_init if r == 0 else s1.epochs_per_round
    if r == 0 or previous is None or not em:
        pools, ratio = Pools.fine_only(fine), (1.0, 0.0, 0.0)
    else:
        teacher = (average_teacher([res.maps for res in history])
                   if s1.teacher == "average" else previous.maps)
        pools = em_pools(fine, labelled, teacher, s1, rng, previous_negative)
        ratio = s1.ratio
    stats = to_json(pools.stats)
    if ctx.dist.main:
        write_json(rdir / "pools.json", stats)
        save_arrays(rdir / "negatives.npy", array=pools.negative)
        append_jsonl(ctx.run_dir / "log.jsonl", {"event": "pools", "round": r, **stats})
    log.info("round %d pools: %s", r, pools.stats.sizes)
    model_path = rdir / "model.pt"
    if model_path.is_file():  # trained before an interruption in the E-step
        model: torch.nn.Module = build_segmenter(cfg.model, load_weights=False)
        state = load_checkpoint_into(model, model_path, RUN_FIX)
        with own_file(model_path, "checkpoint", RUN_FIX):
            losses = [float(v) for v in state["losses"]]
        log.info("round %d: model already trained; continuing with its E-step", r)
    else:
        model, losses = _m_step(ctx, r, pools, ratio, epochs, previous, fine_tumour)
    t_train = time.perf_counter() - t0
    if needs_maps(r, s1.rounds, em, cfg.stage2.include_round0):
        estep = e_step(ctx, model, r, labelled)
    else:
        log.info("round %d: no E-step (neither an EM round nor round selection uses it)", r)
        estep = MapStores({}, 0.0, 0.0)
    summary = RoundSummary(r, epochs, losses, losses[-1] if losses else None, pools.stats,
                           map_stats(estep.maps, labelled, s1.threshold), round(t_train, 2),
                           round(estep.seconds, 2), round(estep.patches_per_s, 2),
                           optimiser_steps=epochs * theta1_steps(s1, len(fine), r))
    if ctx.dist.main:
        write_json(rdir / "summary.json", to_json(summary))
        (rdir / "train_last.pt").unlink(missing_ok=True)
    ctx.dist.barrier()
    return RoundResult(r, model_path, estep.maps, summary)


def _m_step(ctx: RunContext, r: int, pools: Pools, ratio: tuple[float, float, float],
            epochs: int, previous: RoundResult | None,
            fine_tumour: int) -> tuple[torch.nn.Module, list[float]]:
    """θ1 of round ``r``: trained on the pools, warm-started from the previous round."""
    cfg, s1 = ctx.cfg, ctx.cfg.stage1
    rdir = round_dir(ctx.run_dir, r)
    model = build_segmenter(cfg.model)
    optimizer_state = None
    if previous is not None:
        load_checkpoint_into(model, previous.model_path, RUN_FIX)
        carried = previous.model_path.parent / "optimizer.pt"
        if s1.carry_optimizer and carried.is_file():
            with own_file(carried, "optimiser state", RUN_FIX):
                optimizer_state = load_checkpoint(carried)["optimizer"]
    dataset = MixedPatches(ctx.train.sources, pools, ctx.annotations, cfg.tiling.patch_size,
                           cfg.tiling.mpp, s1.reweight, s1.floor, s1.augment,
                           seed=cfg.seed + r, pseudo_kind=s1.pseudo_labels)
    steps = theta1_steps(s1, len(pools.fine), r)
    sizes, mix = pools.sizes, list(ratio)
    if s1.fine_tumour_share is not None:
        sizes, mix = split_first_pool(sizes, mix, fine_tumour, s1.fine_tumour_share)
    sampler = MixedBatchSampler(sizes, mix, s1.batch_size, steps,
                                seed=cfg.seed * 1000 + r, rank=ctx.dist.rank,
                                world_size=ctx.dist.world)

    def on_epoch(epoch: int, loss: float) -> None:
        append_jsonl(ctx.run_dir / "log.jsonl",
                     {"event": "epoch", "round": r, "epoch": epoch, "loss": loss})

    with phase(ctx.run_dir, "theta1", ctx.dist.main):
        losses = fit(model, dataset, sampler, epochs, stage1_lr(s1, r), s1.weight_decay,
                     cfg.runtime, ctx.device, rdir / "train_last.pt", on_epoch=on_epoch,
                     progress=ctx.progress, desc=f"θ1 round {r}", dist=ctx.dist,
                     training=cfg.training, optimizer_state=optimizer_state)
    if ctx.dist.main:
        last = rdir / "train_last.pt"
        if s1.carry_optimizer and (last.is_file() or optimizer_state is not None):
            save_checkpoint(rdir / "optimizer.pt", {"optimizer": (
                load_checkpoint(last)["optimizer"] if last.is_file() else optimizer_state)})
        save_checkpoint(rdir / "model.pt", {"model": model.state_dict(), "round": r,
                                            "losses": losses,
                                            "config": cfg.model_dump(mode="json")})
    ctx.dist.barrier()
    return model, losses


def _load_round(ctx: RunContext, r: int, labelled: dict[int, int],
                with_maps: bool) -> RoundResult:
    rdir = round_dir(ctx.run_dir, r)
    summary = RoundSummary.read(rdir / "summary.json")
    maps: dict[int, StoredMaps] = {}
    for i in labelled if with_maps else ():
        got = open_maps(rdir / "maps" / f"{ctx.train.records[i].slide_id}.zarr",
                        expect_key=ctx.train.tilesets[i].key)
        if got is None:
            model = build_segmenter(ctx.cfg.model, load_weights=False)
            load_checkpoint_into(model, rdir / "model.pt", RUN_FIX)
            maps = e_step(ctx, model, r, labelled).maps
            break
        maps[i] = got
    return RoundResult(r, rdir / "model.pt", maps, summary)


def e_step(ctx: RunContext, model: torch.nn.Module, r: int,
           labelled: dict[int, int]) -> MapStores:
    """θ1 of round ``r`` over every labelled training slide, into ``round_r/maps``."""
    with phase(ctx.run_dir, "e_step", ctx.dist.main):
        return map_to_stores(model, ctx.train, list(labelled),
                             round_dir(ctx.run_dir, r) / "maps", ctx.infer, ctx.dist,
                             ctx.progress, f"E-step after round {r}")


def map_stats(maps: dict[int, StoredMaps], labelled: dict[int, int],
              threshold: float) -> MapStats:
    """Fraction of pixels with p >= 0.5, on positive and on negative slides (slide means), and
    the number of positive-slide patches whose max reaches T."""

    def frac(label: int) -> float:
        xs = [m.pixel_fraction for i, m in maps.items()
              if labelled.get(i) == label and len(m.coords)]
        return float(np.mean(xs)) if xs else 0.0

    above = sum(int((m.max_prob >= threshold).sum()) for i, m in maps.items()
                if labelled.get(i) == 1)
    return MapStats(frac(1), frac(0), above)
