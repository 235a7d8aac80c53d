"""Stage 1: initialisation on pixel labels (round 0), then EM rounds of E-step and M-step.

Each round's folder is complete once its ``summary.json`` exists:

    round_r/model.pt        θ1 after round r
    round_r/pools.json      pool sizes and pseudo-label statistics used to train it
    round_r/maps/*.zarr     θ1(round r) over every labelled training slide: the E-step of r+1
    round_r/summary.json    losses, pools, timings (written last)

``resume`` continues from the last finished epoch or slide, redoing nothing that finished.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixsup.artefacts import load_arrays, load_checkpoint, save_arrays, save_checkpoint
from mixsup.atomic import write_json
from mixsup.config import Stage1Config
from mixsup.errors import MixsupError
from mixsup.infer import infer_slides_iter as infer_patches_iter
from mixsup.mapstore import MapWriter, StoredMaps, open_maps
from mixsup.models.factory import build_segmenter
from mixsup.runtime import compiled, seed_everything
from mixsup.train.context import RunContext, SlideSet
from mixsup.train.dataset import MixedPatches
from mixsup.train.fit import append_jsonl, fit
from mixsup.train.pools import Pools, em_pools, fine_refs
from mixsup.train.sampler import MixedBatchSampler, default_steps

log = logging.getLogger(__name__)


@dataclass
class RoundResult:
    round: int
    model_path: Path
    maps: dict[int, StoredMaps]  # slide index -> its E-step store
    summary: dict[str, Any]


def round_dir(run_dir: Path, r: int) -> Path:
    return run_dir / f"round_{r}"


def run_stage1(ctx: RunContext, rounds: int | None = None,
               init_epochs: int | None = None) -> list[RoundResult]:
    """Round 0 and ``rounds`` EM rounds. A collapsed round (see ``collapsed``) is kept in the
    results, marked, and with ``on_collapse=rollback`` the next round warm-starts from, and
    runs its E-step on, the last round that did not collapse."""
    s1 = ctx.cfg.stage1
    rounds = s1.rounds if rounds is None else rounds
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
    results: list[RoundResult] = []
    previous: RoundResult | None = None
    previous_negative = None
    for r in range(rounds + 1):
        rdir = round_dir(ctx.run_dir, r)
        done = rdir / "summary.json"
        if done.is_file():
            result = _load_round(ctx, r, labelled)
            log.info("round %d already finished; reusing it", r)
        else:
            result = _run_round(ctx, r, fine, labelled, previous, previous_negative,
                                init_epochs)
        neg_path = rdir / "negatives.npy"
        if neg_path.is_file():
            previous_negative = load_arrays(neg_path)["array"]
        results.append(result)
        if previous is not None and collapsed(result.summary, previous.summary,
                                              s1.collapse_ratio):
            result.summary["collapsed"] = True
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
        write_json(ctx.run_dir / "stage1.json", {"rounds": [res.summary for res in results]})
    return results


def _above(summary: dict[str, Any]) -> int:
    return int(summary["map_stats"].get("positive_patches_above_threshold", 0))


def collapsed(summary: dict[str, Any], previous: dict[str, Any], ratio: float) -> bool:
    """θ1 stopped firing on positive slides: its E-step finds fewer patches >= T there than
    ``ratio`` times the previous round's (the pseudo-positive pool of the next round would
    collapse with it)."""
    return _above(summary) < ratio * _above(previous)


def stage1_lr(s1: Stage1Config, r: int) -> float:
    """Round 0 trains at ``lr``; the warm-started M-steps at ``round_lr`` when set."""
    return s1.lr if r == 0 or s1.round_lr is None else s1.round_lr


def _run_round(ctx: RunContext, r: int, fine: np.ndarray, labelled: dict[int, int],
               previous: RoundResult | None, previous_negative: np.ndarray | None,
               init_epochs: int | None = None) -> RoundResult:
    cfg, s1 = ctx.cfg, ctx.cfg.stage1
    rdir = round_dir(ctx.run_dir, r)
    rdir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed * 1000 + r)
    rng = np.random.default_rng((cfg.seed, r))
    t0 = time.perf_counter()
    if r == 0 or previous is None:
        empty = np.zeros((0, 3), np.int64)
        pools = Pools(fine, empty, np.zeros((0, 1, 1), np.float16), empty,
                      {"sizes": {"fine": len(fine), "pseudo_positive": 0, "hard_negative": 0}})
        ratio, epochs = (1.0, 0.0, 0.0), s1.epochs_init if init_epochs is None else init_epochs
    else:
        pools = em_pools(fine, labelled, previous.maps, s1, rng, previous_negative)
        ratio, epochs = s1.ratio, s1.epochs_per_round
    pool_stats = dict(pools.stats)
    if ctx.dist.main:
        write_json(rdir / "pools.json", pool_stats)
        save_arrays(rdir / "negatives.npy", array=pools.negative)
        append_jsonl(ctx.run_dir / "log.jsonl", {"event": "pools", "round": r, **pool_stats})
    log.info("round %d pools: %s", r, pools.stats.get("sizes"))

    model = build_segmenter(cfg.model)
    model_path = rdir / "model.pt"
    if model_path.is_file():  # trained before an interruption in the E-step
        state = load_checkpoint(model_path)
        model.load_state_dict(state["model"])
        losses = list(state["losses"])
        log.info("round %d: model already trained; continuing with its E-step", r)
    else:
        if previous is not None:
            model.load_state_dict(load_checkpoint(previous.model_path)["model"])
        dataset = MixedPatches(ctx.train.sources, pools, ctx.annotations, cfg.tiling.patch_size,
                               cfg.tiling.mpp, s1.reweight, s1.floor, s1.augment,
                               seed=cfg.seed + r)
        steps = s1.steps_per_epoch or default_steps(pools.sizes, s1.batch_size)
        sampler = MixedBatchSampler(pools.sizes, ratio, s1.batch_size, steps,
                                    seed=cfg.seed * 1000 + r, rank=ctx.dist.rank,
                                    world_size=ctx.dist.world)

        def on_epoch(epoch: int, loss: float) -> None:
            append_jsonl(ctx.run_dir / "log.jsonl",
                         {"event": "epoch", "round": r, "epoch": epoch, "loss": loss})

        losses = fit(model, dataset, sampler, epochs, stage1_lr(s1, r), s1.weight_decay,
                     cfg.runtime, ctx.device, rdir / "train_last.pt", on_epoch=on_epoch,
                     progress=ctx.progress, desc=f"θ1 round {r}", dist=ctx.dist,
                     training=cfg.training)
        if ctx.dist.main:
            save_checkpoint(model_path, {"model": model.state_dict(), "round": r,
                                         "losses": losses,
                                         "config": cfg.model_dump(mode="json")})
        ctx.dist.barrier()
    t_train = time.perf_counter() - t0
    maps, t_infer, rate = infer_slides(model, ctx.train, labelled, rdir / "maps", ctx,
                                       desc=f"E-step after round {r}")
    summary = {
        "round": r,
        "epochs": epochs,
        "losses": losses,
        "final_loss": losses[-1] if losses else None,
        "pools": pool_stats,
        "map_stats": map_stats(maps, labelled, s1.threshold),
        "seconds_train": round(t_train, 2),
        "seconds_infer": round(t_infer, 2),
        "infer_patches_per_s": round(rate, 2),
    }
    if ctx.dist.main:
        write_json(rdir / "summary.json", summary)
        (rdir / "train_last.pt").unlink(missing_ok=True)
    ctx.dist.barrier()
    return RoundResult(r, model_path, maps, summary)


def _load_round(ctx: RunContext, r: int, labelled: dict[int, int]) -> RoundResult:
    rdir = round_dir(ctx.run_dir, r)
    summary = json.loads((rdir / "summary.json").read_text())
    maps = {}
    for i in labelled:
        got = open_maps(rdir / "maps" / f"{ctx.train.records[i].slide_id}.zarr",
                        expect_key=ctx.train.tilesets[i].key)
        if got is None:
            model = build_segmenter(ctx.cfg.model, load_weights=False)
            model.load_state_dict(load_checkpoint(rdir / "model.pt")["model"])
            maps, _, _ = infer_slides(model, ctx.train, labelled, rdir / "maps", ctx,
                                      desc=f"E-step after round {r}")
            break
        maps[i] = got
    return RoundResult(r, rdir / "model.pt", maps, summary)


def infer_slides(model: torch.nn.Module, slides: SlideSet, which: dict[int, int] | list[int],
                 out_dir: Path, ctx: RunContext, desc: str = "infer"
                 ) -> tuple[dict[int, StoredMaps], float, float]:
    """Map stores for the chosen slides; stores that already exist for the same tiling are
    reused. Maps stream into the stores, so memory does not grow with the number of slides.

    Under torchrun each rank infers a disjoint shard of the missing slides and writes their
    stores; after a barrier every rank opens the others' from disk.
    """
    cfg, dist = ctx.cfg, ctx.dist
    model.to(ctx.device)
    if cfg.runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    out: dict[int, StoredMaps] = {}
    todo = []

    def store(i: int) -> Path:
        return out_dir / f"{slides.records[i].slide_id}.zarr"

    for i in which:
        got = open_maps(store(i), expect_key=slides.tilesets[i].key)
        if got is None:
            todo.append((i, slides.tilesets[i].coords))
        else:
            out[i] = got

    def open_sink(i: int, n: int, m: int) -> MapWriter:
        tiles = slides.tilesets[i]
        return MapWriter(store(i), tiles.coords, m,
                         {"key": tiles.key, "slide_id": slides.records[i].slide_id,
                          "size0": tiles.size0, "written_by_rank": dist.rank})

    start = time.perf_counter()
    mine = dist.shard(todo)
    n_done = dist.mean(float(sum(len(c) for _, c in mine))) * dist.world
    if mine:
        t = slides.tilesets[mine[0][0]]
        for i, stored in infer_patches_iter(compiled(model, cfg.runtime), slides.sources, mine,
                                            t.patch_size, t.mpp, cfg.stage1.map_downsample,
                                            ctx.device, cfg.stage1.infer_batch_size,
                                            cfg.runtime.num_workers, cfg.runtime.amp,
                                            cfg.runtime.channels_last, progress=ctx.progress,
                                            desc=desc, open_sink=open_sink):
            out[i] = stored
    dist.barrier()
    for i, _ in todo:
        if i not in out:
            got = open_maps(store(i), expect_key=slides.tilesets[i].key)
            if got is None:
                raise MixsupError(f"rank {dist.rank}: the map store of "
                                  f"{slides.records[i].slide_id} is missing after the E-step",
                                  "check the other ranks' logs", out_dir)
            out[i] = got
    elapsed = time.perf_counter() - start
    return out, elapsed, n_done / max(elapsed, 1e-9)


def map_stats(maps: dict[int, StoredMaps], labelled: dict[int, int],
              threshold: float) -> dict[str, float]:
    """Fraction of pixels with p >= 0.5, on positive and on negative slides (slide means), and
    the number of positive-slide patches whose max reaches T."""

    def frac(label: int) -> float:
        xs = [m.pixel_fraction for i, m in maps.items()
              if labelled.get(i) == label and len(m.coords)]
        return float(np.mean(xs)) if xs else 0.0

    above = sum(int((m.max_prob >= threshold).sum()) for i, m in maps.items()
                if labelled.get(i) == 1)
    return {"positive_slides_pixel_fraction": frac(1),
            "negative_slides_pixel_fraction": frac(0),
            "positive_patches_above_threshold": above}
