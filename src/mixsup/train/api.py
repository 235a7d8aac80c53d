"""``mixsup train``: the modes, from a dataset directory to a finished run folder."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from mixsup.config import Config
from mixsup.config.run import check_run, create_run
from mixsup.dataset.stain_reference import with_stain
from mixsup.dataset.tiles import SlideSet, slide_set
from mixsup.labels.table import load_dataset
from mixsup.methods.bundle import export_bundle
from mixsup.methods.registry import Mode, get_mode
from mixsup.runtime.dist import SINGLE, Dist
from mixsup.runtime.progress import phase
from mixsup.storage.atomic import remove_partial, write_json
from mixsup.storage.records import to_json
from mixsup.train.context import RunContext, prepare
from mixsup.train.figures import stage1_figures
from mixsup.train.mil import mil_model_path, run_mil
from mixsup.train.preflight import check_training
from mixsup.train.results import RoundRow, RoundSummary, Stage2Summary, TrainSummary, round_dir
from mixsup.train.rounds import run_stage1, selectable, selection_candidates
from mixsup.train.selection import operating_threshold, select_round
from mixsup.train.stage2 import run_stage2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    summary: TrainSummary | None  # None on the ranks other than 0


def train(data_dir: str | Path, out: str | Path, cfg: Config, mode: str = "mixed",
          resume: bool = False, strict: bool = False, progress: bool = True,
          dist: Dist = SINGLE) -> TrainResult:
    """Train one mode (``mixsup.methods.registry``) from a dataset folder to a run folder
    with its exported bundle (``OUT/bundle``).

    Under torchrun pass the ``Dist`` of ``init_dist``: every rank runs this function; rank 0
    writes the shared files.

    Args:
        data_dir: The dataset folder (``slides.csv`` and ``annotations/``).
        out: The run folder to create (or, with ``resume``, to go on with).
        cfg: The configuration (``load_config``).
        mode: The training mode: ``mixed`` (the method), ``pixel``, ``image`` or ``abmil``.
        resume: Go on with an unfinished run in ``out`` instead of refusing the folder.
        strict: Stop at a slide that cannot be read instead of leaving it out.
        progress: Show progress bars.
        dist: This process's rank under torchrun; ``SINGLE`` for one process.

    Returns:
        The run folder and the training summary (rounds, selected round, threshold); the
        summary is None on the ranks other than 0.

    Example:
        >>> from mixsup import load_config, train
        >>> result = train("data", "runs/r1", load_config("small"))  # doctest: +SKIP
        >>> result.summary.operating_threshold  # doctest: +SKIP
        0.42
    """
    spec = get_mode(mode)
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
    with phase(run_dir, "tiling", dist.main):
        val = with_stain(slide_set(data, ("val",), cfg, run_dir / "tiles", strict, progress,
                                   dist), ctx.stain)
    summary = spec.train(ctx, val if val.labelled() else None)
    if dist.main:
        write_json(run_dir / "summary.json", to_json(summary))
        # They served the rounds (and a resume); predict caches its own beside the bundle.
        shutil.rmtree(ctx.graph_dir, ignore_errors=True)
    dist.barrier()
    return TrainResult(run_dir, summary if dist.main else None)


def train_segmenter(ctx: RunContext, spec: Mode, val: SlideSet | None) -> TrainSummary:
    """θ1 (with EM rounds where the mode has them), θ2 after every round, the round choice
    (the segmenter modes' trainer in the ``methods.registry``)."""
    cfg, s1, run_dir = ctx.cfg, ctx.cfg.stage1, ctx.run_dir
    results = run_stage1(ctx, em=spec.em_rounds)
    figures = stage1_figures(run_dir / "figures", ctx.train, ctx.train.labelled(),
                             [(res.round, res.maps) for res in results]) if ctx.dist.main else []
    keep = selection_candidates({res.round: res.summary.collapsed for res in results},
                                s1.rounds, cfg.stage2.include_round0, s1.on_collapse)
    if keep == [0] and not selectable(0, s1.rounds, cfg.stage2.include_round0):
        log.warning("every round >= 1 collapsed: round 0 is the only one left to select")
    candidates = [res for res in results if res.round in keep]
    stage2 = {res.round: run_stage2(ctx, res, val) for res in candidates}
    choice = select_round(list(stage2.values()), cfg.stage2.select_by,
                          cfg.stage2.select_tolerance, cfg.stage2.tie_break)
    chosen = stage2[choice.round]
    threshold, source = operating_threshold(chosen.val)
    bundle = run_dir / "bundle"
    if ctx.dist.main:
        rdir = round_dir(run_dir, choice.round)
        export_bundle(bundle, cfg, spec, rdir / "model.pt", rdir / "stage2" / "model.pt", {
            "theta1_slides": theta1_slides(ctx, spec),
            "selected_round": choice.round,
            "select_by": cfg.stage2.select_by,
            "selection": to_json(choice),
            "stage2_losses": {r: {"train_curve": s.train_curve, "train_loss": s.train_loss,
                                  "val_loss": s.val_loss} for r, s in stage2.items()},
            "operating_threshold": threshold,
            "threshold_source": source,
        }, ctx.stain)
    return TrainSummary(spec.name, threshold, source, str(bundle), choice.round, choice,
                        [_round_row(res.summary, stage2.get(res.round)) for res in results],
                        skipped_slides=ctx.train.skipped,
                        figures=[str(p.relative_to(run_dir)) for p in figures])


def _round_row(rs: RoundSummary, s2: Stage2Summary | None) -> RoundRow:
    return RoundRow(rs.round, rs.final_loss, rs.pools.sizes,
                    rs.pools.pseudo_positive_pixel_fraction, rs.map_stats, rs.collapsed,
                    None if s2 is None else s2.train_curve,
                    None if s2 is None else s2.train_loss,
                    None if s2 is None else s2.val_loss, rs.optimiser_steps)


def train_mil(ctx: RunContext, spec: Mode, val: SlideSet | None) -> TrainSummary:
    """The image-level MIL baseline (``methods.registry``)."""
    mil = run_mil(ctx, val)
    threshold, source = operating_threshold(mil.val)
    bundle = ctx.run_dir / "bundle"
    if ctx.dist.main:
        export_bundle(bundle, ctx.cfg, spec, mil_model_path(ctx.run_dir), None, {
            "theta1_slides": theta1_slides(ctx, spec), "selected_round": None,
            "operating_threshold": threshold, "threshold_source": source,
            "mil_losses": mil.epoch_losses}, ctx.stain)
    return TrainSummary(spec.name, threshold, source, str(bundle),
                        mil_epoch_losses=mil.epoch_losses, skipped_slides=ctx.train.skipped)


def theta1_slides(ctx: RunContext, spec: Mode) -> list[str]:
    """The slides θ1 learnt from: annotated ones (pixel labels, for the segmenter modes) and,
    in the modes that use slide labels (EM pools, MIL), labelled ones. ``stage train`` keeps
    them out of the forest."""
    used = set(ctx.annotations) if spec.segmenter else set()
    if spec.em_rounds or not spec.segmenter:
        used |= set(ctx.train.labelled())
    return sorted(ctx.train.records[i].slide_id for i in used)
