"""``mixsup train``: the modes, from a dataset directory to a finished run folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixsup.atomic import remove_partial, write_json
from mixsup.bundle import export_bundle
from mixsup.config import Config
from mixsup.dist import SINGLE, Dist
from mixsup.labels.table import load_dataset
from mixsup.run import check_run, create_run
from mixsup.train.context import RunContext, prepare, slide_set
from mixsup.train.figures import stage1_figures
from mixsup.train.preflight import check_training
from mixsup.train.rounds import round_dir, run_stage1
from mixsup.train.selection import full_sensitivity_threshold, run_stage2, select_round

log = logging.getLogger(__name__)
MODES = ("mixed", "pixel", "image")


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]


def train(data_dir: str | Path, out: str | Path, cfg: Config, mode: str = "mixed",
          resume: bool = False, strict: bool = False, progress: bool = True,
          dist: Dist = SINGLE) -> TrainResult:
    """Train one mode. Under torchrun pass the ``Dist`` of ``init_dist``: every rank runs this
    function; rank 0 writes the shared files."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    run_dir = Path(out)
    if dist.main:
        cfg = check_run(run_dir, cfg, resume)
    # Every check that can fail runs before the folder exists (on every rank, so that all
    # ranks stop together), so a corrected command is not refused as an existing run.
    data = load_dataset(data_dir)
    checked = check_training(data, cfg, mode, strict)
    if dist.main:
        create_run(run_dir, cfg)
        remove_partial(run_dir)
    dist.barrier()
    if not dist.main:
        cfg = check_run(run_dir, cfg, resume=True)
    ctx = prepare(data, cfg, run_dir, strict=strict, progress=progress, dist=dist,
                  checked=checked)
    if mode == "image":
        return _train_image(ctx, data, cfg, run_dir, strict, progress)
    s1 = cfg.stage1
    if mode == "mixed":
        results = run_stage1(ctx)
    else:  # the same θ1 optimiser steps as mixed, all on the pixel labels
        results = run_stage1(ctx, rounds=0,
                             init_epochs=s1.epochs_init + s1.rounds * s1.epochs_per_round)
    figures = stage1_figures(run_dir / "figures", ctx.train, ctx.train.labelled(),
                             [(res.round, res.maps) for res in results]) if dist.main else []
    val = slide_set(data, ("val",), cfg, run_dir / "tiles", strict, progress, dist)
    val = val if val.labelled() else None
    usable = [res for res in results if not res.summary.get("collapsed")]
    stage2 = [run_stage2(ctx, res, val) for res in usable]
    choice = select_round(stage2, cfg.stage2.select_by, cfg.stage2.select_tolerance)
    selected = choice.round
    by_round = {s["round"]: s for s in stage2}
    chosen = by_round[selected]
    threshold, source = _operating_threshold(chosen)
    if not dist.main:
        dist.barrier()
        return TrainResult(run_dir, {})
    bundle = export_bundle(run_dir / "bundle", cfg, round_dir(run_dir, selected) / "model.pt",
                           round_dir(run_dir, selected) / "stage2" / "model.pt", {
                               "mode": mode,
                               "theta1_slides": theta1_slides(ctx, mode),
                               "selected_round": selected,
                               "select_by": cfg.stage2.select_by,
                               "selection": choice.to_json(),
                               "stage2_losses": {s["round"]: {k: s.get(k) for k in
                                                              ("train_curve", "train_loss",
                                                               "val_loss")}
                                                 for s in stage2},
                               "operating_threshold": threshold,
                               "threshold_source": source,
                           })
    summary = {
        "mode": mode,
        "selected_round": selected,
        "select_by": cfg.stage2.select_by,
        "selection": choice.to_json(),
        "operating_threshold": threshold,
        "threshold_source": source,
        "bundle": str(bundle),
        "rounds": [{"round": res.round, "final_loss": res.summary["final_loss"],
                    "pools": res.summary["pools"].get("sizes"),
                    "pseudo_positive_pixel_fraction":
                        res.summary["pools"].get("pseudo_positive_pixel_fraction"),
                    "map_stats": res.summary["map_stats"],
                    "collapsed": bool(res.summary.get("collapsed")),
                    "stage2_train_curve": by_round.get(res.round, {}).get("train_curve"),
                    "stage2_train_loss": by_round.get(res.round, {}).get("train_loss"),
                    "stage2_val_loss": by_round.get(res.round, {}).get("val_loss")}
                   for res in results],
        "skipped_slides": ctx.train.skipped,
        "figures": [str(p.relative_to(run_dir)) for p in figures],
    }
    write_json(run_dir / "summary.json", summary)
    dist.barrier()
    return TrainResult(run_dir, summary)


def _train_image(ctx, data, cfg: Config, run_dir: Path, strict: bool,
                 progress: bool) -> TrainResult:
    from mixsup.train.mil import mil_model_path, run_mil

    val = slide_set(data, ("val",), cfg, run_dir / "tiles", strict, progress, ctx.dist)
    mil = run_mil(ctx, val if val.labelled() else None)
    if not ctx.dist.main:
        ctx.dist.barrier()
        return TrainResult(run_dir, {})
    threshold, source = _operating_threshold(mil)
    bundle = export_bundle(run_dir / "bundle", cfg, mil_model_path(run_dir), None, {
        "mode": "image", "theta1_slides": theta1_slides(ctx, "image"),
        "selected_round": None, "operating_threshold": threshold,
        "threshold_source": source, "mil_losses": mil["epoch_losses"]})
    summary = {"mode": "image", "selected_round": None, "operating_threshold": threshold,
               "threshold_source": source, "bundle": str(bundle), "rounds": [],
               "mil_epoch_losses": mil["epoch_losses"], "skipped_slides": ctx.train.skipped}
    write_json(run_dir / "summary.json", summary)
    ctx.dist.barrier()
    return TrainResult(run_dir, summary)


def theta1_slides(ctx: RunContext, mode: str) -> list[str]:
    """The slides θ1 learnt from: annotated ones (pixel labels) and, except in the pixel
    mode, labelled ones (EM pools, MIL). ``stage train`` keeps them out of the forest."""
    used = set() if mode == "image" else set(ctx.annotations)
    if mode != "pixel":
        used |= set(ctx.train.labelled())
    return sorted(ctx.train.records[i].slide_id for i in used)


def _operating_threshold(chosen: dict[str, Any]) -> tuple[float, str]:
    """The largest threshold keeping 100% sensitivity on val; 0.5 without val positives."""
    scores = chosen.get("val_scores")
    if scores:
        ids = list(scores)
        thr = full_sensitivity_threshold([scores[i] for i in ids],
                                         [chosen["val_labels"][i] for i in ids])
        if thr is not None:
            return thr, "val: lowest positive score (100% sensitivity)"
    log.warning("no labelled positive val slide: the operating threshold defaults to 0.5")
    return 0.5, "default 0.5 (no positive val slide)"
