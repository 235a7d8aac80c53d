"""``mixsup experiment``: every mode (and ablation) x seed -> train, predict test, evaluate,
then the paper's tables and figures. Re-running the command resumes unfinished runs. With
``workers`` > 1 the runs go to that many child processes (``runtime.parallel_runs``)."""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure

from mixsup.config import Config, load_config
from mixsup.dataset.tiles import tiling_fingerprint
from mixsup.errors import MixsupError
from mixsup.evaluate.metrics import SlideMetrics, slide_metrics
from mixsup.evaluate.report import (
    read_labels,
    read_predictions,
    roc_figure,
)
from mixsup.evaluate.thresholds import (
    RULES,
    OperatingPoint,
    choose_rule,
    operating_points,
    summarise_rules,
)
from mixsup.experiment.budget import BudgetPoint, budget_figure, budget_markdown, budget_points
from mixsup.experiment.cluster import LOCAL, Launcher, check_launcher
from mixsup.experiment.folds import pooled_metrics, run_folds
from mixsup.experiment.pairs import (
    PairRow,
    join_variant,
    paired_markdown,
    paired_table,
    split_variant,
    stage2_table,
    theta1_scores,
    write_paired,
)
from mixsup.experiment.runs import (
    HeldOut,
    Job,
    RunResult,
    Variant,
    check_same_settings,
    run_grid,
    share_tilings,
    slug,
)
from mixsup.labels.table import load_dataset
from mixsup.methods.registry import MODES, Mode
from mixsup.render.plotting import save_png
from mixsup.storage.atomic import atomic_open, write_text
from mixsup.storage.user_files import output_dir
from mixsup.train.preflight import check_training
from mixsup.train.results import selected_val_scores

log = logging.getLogger(__name__)
METRICS = ["specificity_at_full_sensitivity", "auc", "sensitivity", "specificity",
           "threshold_at_full_sensitivity", "operating_threshold", "tied_fraction", "n_pos",
           "n_neg"]
THETA1_METRICS = ["theta1_auc", "theta1_specificity_at_full_sensitivity"]
ABLATIONS = {"pixel-labels": "subset.max_fine_patches", "slides": "subset.slide_label_fraction",
             "pixel-slides": "subset.pixel_slides", "pseudo-labels": "stage1.pseudo_labels",
             "keep-top": "stage1.positive_keep_top", "teacher": "stage1.teacher",
             "fine-tumour": "stage1.fine_tumour_share", "stage2-epochs": "stage2.epochs",
             "em-ratio": "stage1.ratio", "freeze": "model.freeze_stages",
             "stage2-freeze": "stage2.freeze_stages", "stain": "stain.normalise"}
# A value of the ablation as the config reads it, where the two differ: commas separate the
# values of an --ablate, so a ratio is written 2-3-5 there.
ABLATION_VALUES: dict[str, Callable[[str], str]] = {
    "em-ratio": lambda v: "[" + v.replace("-", ",") + "]"}
# Switches that only the E-step's pools read: pixel and image runs are the same at every
# value, so mixed at each value is paired with the plain runs of every mode (mixed's own
# included). The ratio's pseudo-positive and negative shares draw from pools only mixed has.
EM_SWITCHES = frozenset({"pseudo-labels", "keep-top", "teacher", "em-ratio"})
# An ablation of the pixel labels (or of how they are drawn) is run for every mode that learns
# from them, so that mixed - pixel can be read at each value; the others vary mixed only.
ABLATED_MODES = {"pixel-slides": ("mixed", "pixel"), "fine-tumour": ("mixed", "pixel"),
                 "stage2-epochs": ("mixed", "pixel"), "freeze": ("mixed", "pixel"),
                 "stage2-freeze": ("mixed", "pixel"), "stain": ("mixed", "pixel")}


def run_row(r: RunResult) -> dict[str, object]:
    """A run's ``runs.csv`` row."""
    m = r.evaluation.overall
    return {"mode": r.variant, "seed": r.seed, "selected_round": r.selected_round,
            "selection_rule": r.selection_rule, "run": str(r.run),
            "train_seconds": r.train_seconds} | {k: getattr(m, k) for k in METRICS} | {
                k: _theta1_value(r.theta1, k) for k in THETA1_METRICS}


def _theta1_value(m: SlideMetrics | None, key: str) -> float:
    return float("nan") if m is None else float(getattr(m, key.removeprefix("theta1_")))


@dataclass(frozen=True)
class SummaryRow:
    """One variant's metrics over its seeds (mean and std), overall or on one center."""

    variant: str
    center: str  # "all", or a center's name
    seeds: int
    mean: dict[str, float]  # by METRICS name
    std: dict[str, float]

    def csv_row(self) -> dict[str, object]:
        row: dict[str, object] = {"mode": self.variant, "center": self.center,
                                  "seeds": self.seeds}
        for k in METRICS + THETA1_METRICS:
            row[k], row[f"{k}_std"] = self.mean[k], self.std[k]
        return row


@dataclass(frozen=True)
class Experiment:
    rows: list[SummaryRow]
    tables: Path  # results.md/csv, runs.csv, paired.csv and the figures
    preds: dict[str, dict[int, Path]] = field(default_factory=dict)  # variant -> seed -> pred


def parse_ablation(spec: str, modes: tuple[str, ...] = tuple(MODES)) -> list[Variant]:
    key, _, values = spec.partition("=")
    if key not in ABLATIONS or not values:
        raise ValueError(f"--ablate takes {' or '.join(ABLATIONS)}=v1,v2,... (got {spec!r})")
    ablated = [m for m in ABLATED_MODES.get(key, ("mixed",)) if m in modes or m == "mixed"]
    value = ABLATION_VALUES.get(key, str)
    return [Variant(join_variant(m, f"{key}={v}"), m, (f"{ABLATIONS[key]}={value(v)}",))
            for v in values.split(",") for m in ablated]


def grid_variants(modes: tuple[str, ...], ablations: tuple[str, ...],
                  base: bool = True) -> list[Variant]:
    """Every mode's plain run, then each ablation's; ``base=False`` drops the plain runs (they
    live in another experiment folder, or only the ablated settings are wanted)."""
    if not base and not ablations:
        raise ValueError("--no-base runs only the --ablate variants, and none was given")
    variants = [Variant(m, m) for m in modes] if base else []
    for spec in ablations:
        variants += parse_ablation(spec, modes)
    return variants


def run_experiment(data_dir: str | Path, out: str | Path, preset: str = "small",
                   modes: tuple[str, ...] = tuple(MODES), seeds: tuple[int, ...] = (0,),
                   ablations: tuple[str, ...] = (), files: tuple = (),
                   overrides: tuple[str, ...] = (), per_center: bool = False,
                   progress: bool = True, workers: int = 1, base: bool = True,
                   test_data: str | Path | None = None, folds: int = 0,
                   share: bool = True, launcher: Launcher = LOCAL) -> Experiment:
    """Every mode (and ablation) x seed: train, predict the test split, evaluate, then the
    tables and figures (``results.md``, ``paired.csv``...). Re-running it resumes unfinished
    runs.

    Args:
        data_dir: The dataset folder.
        out: The experiment folder (runs in ``out/runs``).
        preset: The config preset every run starts from.
        modes: The training modes to run.
        seeds: The seeds each variant runs with.
        ablations: ``--ablate`` specs, ``key=v1,v2`` (``ABLATIONS`` lists the keys).
        files: YAML config files on top of the preset.
        overrides: ``key.sub=value`` overrides on top of the files.
        per_center: Also report the metrics per center.
        progress: Show progress bars.
        workers: Runs at once; > 1 runs them in child processes (``run_grid``).
        base: Run each mode's plain variant too, not only its ablations.
        test_data: Score the runs on that dataset's test split (an external test set)
            instead of ``data_dir``'s (``HeldOut``).
        folds: >= 3: grouped cross-validation over the labelled slides
            (``experiment.folds``); the tables pool every fold's test slides.
        share: A variant that changes only stage-2 settings starts from its mode's plain
            run's θ1 rounds at the same seed when that run has finished, and a pixel run from
            its mixed sibling's round 0 (``train.reuse``).
        launcher: The runs as cluster jobs instead of local processes
            (``experiment.cluster``; their logs in ``out/jobs``).

    Returns:
        The summary rows (mean and std over seeds per variant), the tables folder and each
        variant's prediction folder per seed.

    Example:
        >>> from mixsup.experiment.core import run_experiment
        >>> exp = run_experiment("data", "exp", modes=("mixed", "pixel"),
        ...                      seeds=(0, 1))  # doctest: +SKIP
        >>> exp.tables / "results.md"  # doctest: +SKIP
        PosixPath('exp/results.md')
    """
    if workers < 1:
        raise ValueError(f"--jobs takes a number of parallel runs >= 1 (got {workers})")
    check_launcher(launcher)
    data_dir, out = Path(data_dir), Path(out)
    if folds:
        if test_data is not None:
            raise MixsupError("--folds and --test-data do not go together",
                              "cross-validate on one dataset, or score an external test set "
                              "without --folds", Path(test_data))

        def run_fold(fold_data: Path, fold_out: Path) -> dict[str, dict[int, Path]]:
            return run_experiment(fold_data, fold_out, preset, modes, seeds, ablations, files,
                                  overrides, per_center, progress, workers, base,
                                  share=share, launcher=launcher).preds

        output_dir(out, "experiment folder")
        pooled = run_folds(data_dir, out, folds, 0, run_fold)
        return pooled_experiment(data_dir, out / "cv", pooled, seeds, folds)
    variants = grid_variants(modes, ablations, base)
    # Everything that can fail is checked before the first run folder exists.
    held_out = HeldOut.of(data_dir, test_data)
    data = load_dataset(data_dir)
    jobs = [(seed, v, shared_features(load_config(
        preset, files, [*overrides, *v.overrides, f"seed={seed}"]), v.mode, out))
        for seed in seeds for v in variants]
    unpaced = [v.name for _, v, cfg in jobs
               if split_variant(v.name)[1].startswith("em-ratio=")
               and cfg.stage1.steps_per_epoch is None]
    if unpaced:
        raise MixsupError(f"--ablate em-ratio needs a set θ1 step count ({unpaced[0]})",
                          "add --set stage1.steps_per_epoch=N: without it every mode's steps "
                          "per epoch follow the ratio, and pixel's plain runs would not be the "
                          "same at each ratio")
    annotated: dict[str, int] = {}  # mode -> annotated train slides it could use
    checked: set[str] = set()
    for _, v, cfg in jobs:  # every variant once: an ablated value may be the one refused
        if v.name not in checked:
            checked.add(v.name)
            n = len(check_training(data, cfg, v.mode, strict=False).annotations)
            annotated.setdefault(v.mode, n)
    for _, v, cfg in jobs:
        kept = cfg.subset.pixel_slides
        if v.overrides and kept is not None and kept >= annotated.get(v.mode, 0) > 0:
            log.warning("%s: a budget of %d pixel-labelled slides keeps every one of the %d "
                        "annotated training slides: this variant is the plain run",
                        v.name, kept, annotated[v.mode])
    names = {v.name for v in variants}
    grid = [Job(v, seed, cfg, out / "runs" / f"{slug(v.name)}_seed{seed}", held_out.suffix,
                out / "runs" / f"{slug(v.mode)}_seed{seed}" if share and stage2_only(v) else None,
                out / "runs" / f"{slug(sibling)}_seed{seed}" if share and (
                    sibling := round0_sibling(v, names)) else None)
            for seed, v, cfg in jobs]
    # The runs that may reuse another's rounds go last, so that those are finished first.
    grid.sort(key=lambda job: job.stage1_from is not None or job.round0_from is not None)
    for job in grid:
        check_same_settings(job.run / "train", job.cfg)
    dangling = [j.run for j in grid if j.run.is_symlink() and not j.run.exists()]
    if dangling:
        raise MixsupError(f"{len(dangling)} run folder(s) link to nothing",
                          "remove the links (the runs then train afresh) or restore what they "
                          "point to", dangling[0])
    output_dir(out, "experiment folder")
    precompute_features(data_dir, [(MODES[v.mode], cfg) for _, v, cfg in jobs], progress)
    if share:
        tilings = share_tilings(data_dir, held_out, [cfg for _, _, cfg in jobs], out, progress)
        grid = [replace(j, tiles_from=tilings[fp][0], test_tiles_from=tilings[fp][1])
                for j in grid for fp in [tiling_fingerprint(j.cfg)]]
    results = run_grid(grid, data_dir, held_out, workers, progress, launcher, out / "jobs")
    labels, _ = read_labels(held_out.labels)
    mode_of = {v.name: MODES[v.mode] for v in variants}
    results = {name: [replace(r, theta1=theta1_metrics(r.pred, labels)
                              if mode_of[name].ranks_by_probability else None) for r in rs]
               for name, rs in results.items()}
    rows = summarise(results, per_center)
    points = {name: [run_points(r, labels) for r in rs] for name, rs in results.items()}
    preds = {name: {r.seed: r.pred for r in rs} for name, rs in results.items()}
    pairs = paired_table(preds, labels, shared=EM_SWITCHES) + stage2_table(preds, labels)
    tables = held_out.tables(out)
    tables.mkdir(parents=True, exist_ok=True)
    write_paired(tables / "paired.csv", pairs)
    budget = budget_points({r.variant: (r.mean["auc"], r.std["auc"]) for r in rows
                            if r.center == "all"}, pairs, annotated.get("mixed", 0))
    write_results(tables, rows, seeds, results, pairs, budget, held_out.note())
    write_thresholds(tables, results, points)
    if budget:
        budget_figure(tables / "budget.png", budget)
    first = {name: r[0].pred for name, r in results.items()}
    roc_overlay(tables / "roc.png", first, held_out.labels)
    heatmap_grid(tables / "heatmaps.png", first, held_out.data)
    return Experiment(rows, tables, preds)


def pooled_experiment(data_dir: Path, tables: Path, preds: dict[str, dict[int, Path]],
                      seeds: tuple[int, ...], folds: int) -> Experiment:
    """The tables of a cross-validation from its pooled prediction folders: every labelled
    slide scored once per seed, by the fold that held it out."""
    labels_csv = data_dir / "slides.csv"
    labels, _ = read_labels(labels_csv)
    rows = [_row(name, "all", [pooled_metrics(p, labels) for p in by_seed.values()],
                 [theta1_metrics(p, labels) if MODES[split_variant(name)[0]].ranks_by_probability
                  else None for p in by_seed.values()])
            for name, by_seed in preds.items()]
    pairs = paired_table(preds, labels, shared=EM_SWITCHES) + stage2_table(preds, labels)
    tables.mkdir(parents=True, exist_ok=True)
    write_paired(tables / "paired.csv", pairs)
    n_test = len({i for by_seed in preds.values() for p in by_seed.values()
                  for i in read_predictions(p / "predictions.csv") if i in labels})
    write_results(tables, rows, seeds, None, pairs, None,
                  f"Test slides: {n_test}, pooled over {folds} grouped folds (each slide "
                  "scored by the fold that held it out; AUC and spec @ sens 1 rank scores of "
                  "differently trained fold models together; sensitivity and specificity come "
                  "from each fold's own operating threshold; per-center rows and threshold "
                  "rules are in each fold's own tables, OUT/folds/fold<f>/).")
    roc_overlay(tables / "roc.png", {name: next(iter(p.values())) for name, p in preds.items()},
                labels_csv)
    return Experiment(rows, tables, preds)


def round0_sibling(v: Variant, names: set[str]) -> str | None:
    """For a pixel variant, the mixed variant of the same setting when the grid has it: their
    round 0 is one computation (pixel mode passes through mixed's round 0)."""
    mode, setting = split_variant(v.name)
    if mode != "pixel":
        return None
    sibling = join_variant("mixed", setting)
    return sibling if sibling in names else None


def stage2_only(v: Variant) -> bool:
    """Whether a variant's own settings are all stage 2's (its θ1 rounds are its mode's)."""
    return bool(v.overrides) and all(o.startswith("stage2.") for o in v.overrides)


def shared_features(cfg: Config, mode: str, out: Path) -> Config:
    """A feature-based mode's runs share one cache per encoder (``out/features/<id>``), so
    that the features are computed once for every seed."""
    m = MODES[mode]
    section = getattr(cfg, m.section)
    if not m.cached_features or section.features:
        return cfg
    from mixsup.inference.features import fingerprint, fingerprint_id

    folder = out / "features" / fingerprint_id(fingerprint(cfg, section))
    return cfg.model_copy(update={m.section: section.model_copy(
        update={"features": str(folder.resolve())})})


def precompute_features(data_dir: Path, jobs: list[tuple[Mode, Config]],
                        progress: bool) -> None:
    """Each shared feature folder filled once, for every split, before the grid starts: the
    runs (in parallel or not) then only read them, at training and at prediction."""
    from mixsup.inference.features import extract_dataset

    done: set[str] = set()
    for mode, cfg in jobs:
        section = getattr(cfg, mode.section)
        folder = section.features if mode.cached_features else None
        # TRIDENT's features are made by TRIDENT: the runs only read them
        if folder and folder not in done and section.features_format == "mixsup":
            extract_dataset(data_dir, folder, cfg, ("train", "val", "test"), progress)
            done.add(folder)


def theta1_metrics(pred: Path, labels: dict[str, int]) -> SlideMetrics | None:
    """θ1's own slide score on the test slides (no operating threshold: 0.5 stands in)."""
    scores = theta1_scores(pred)
    ids = [i for i in scores if i in labels]
    y = np.array([labels[i] for i in ids])
    if len(set(y.tolist())) < 2:
        return None
    return slide_metrics(np.array([scores[i] for i in ids]), y, 0.5)


def run_points(r: RunResult, labels: dict[str, int]) -> list[OperatingPoint]:
    """Every threshold rule's point for one run: the rule applied to the val scores behind
    its bundle's threshold, then scored on the test slides."""
    val = selected_val_scores(r.run / "train", r.selected_round)
    if val is None:
        return []
    vid = sorted(val.scores)
    scores = read_predictions(r.pred / "predictions.csv")
    tid = [i for i in scores if i in labels]
    return operating_points(np.array([val.scores[i] for i in vid]),
                            np.array([val.labels[i] for i in vid]),
                            np.array([scores[i] for i in tid]), np.array([labels[i] for i in tid]))


def write_thresholds(out: Path, results: dict[str, list[RunResult]],
                     points: dict[str, list[list[OperatingPoint]]]) -> None:
    """``thresholds.csv`` (every run x rule) and ``thresholds.md`` (every variant x rule)."""
    with atomic_open(out / "thresholds.csv") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["mode", "seed", "rule", "threshold", "sensitivity", "specificity"])
        for name, rs in results.items():
            for r, run in zip(rs, points[name], strict=True):
                w.writerows([name, r.seed, p.rule, f"{p.threshold:.6f}", f"{p.sensitivity:.4f}",
                             f"{p.specificity:.4f}"] for p in run)
    lines = ["Operating thresholds fixed on val before the test (each rule applied to the val "
             "scores behind the bundle's threshold), scored on the test slides:", "",
             "| mode | rule | what it promises | runs | test sensitivity | test specificity "
             "| runs catching every positive |", "|---|---|---|---|---|---|---|"]
    summaries = summarise_rules(points)
    for s in summaries:
        lines.append(f"| {s.variant} | {s.rule} | {RULES[s.rule].promise} | {s.runs} | "
                     f"{s.sensitivity:.3f} | {s.specificity:.3f} | {s.all_caught}/{s.runs} |")
    chosen = choose_rule(summaries)
    if chosen:
        lines += ["", f"On these slides the choice rule of docs/preregistration.md (the highest "
                  f"mean specificity among rules whose sensitivity, pooled over every run, is "
                  f"at least 0.95) picks `{chosen}`: a choice to make on development slides, "
                  f"not to read off a sealed test."]
    write_text(out / "thresholds.md", "\n".join(lines) + "\n")


def summarise(results: dict[str, list[RunResult]], per_center: bool) -> list[SummaryRow]:
    rows = []
    for name, runs in results.items():
        rows.append(_row(name, "all", [r.evaluation.overall for r in runs],
                         [r.theta1 for r in runs]))
        if per_center:
            centers = sorted({c for r in runs for c in r.evaluation.per_center})
            for c in centers:
                rows.append(_row(name, c, [r.evaluation.per_center[c] for r in runs
                                           if c in r.evaluation.per_center], []))
    return rows


def _row(name: str, center: str, runs: list[SlideMetrics],
         theta1: list[SlideMetrics | None]) -> SummaryRow:
    mean, std = {}, {}
    columns = {k: [getattr(m, k) for m in runs] for k in METRICS} | {
        k: [_theta1_value(m, k) for m in theta1] for k in THETA1_METRICS}
    for k, values in columns.items():
        vals = np.array(values, float)
        mean[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        std[k] = float(np.nanstd(vals)) if np.isfinite(vals).sum() > 1 else 0.0
    return SummaryRow(name, center, len(runs), mean, std)


RUN_COLUMNS = ["mode", "seed", "selected_round", "selection_rule", "auc",
               "specificity_at_full_sensitivity", *THETA1_METRICS, "sensitivity",
               "specificity", "tied_fraction", "train_seconds", "run"]


def write_results(out: Path, rows: list[SummaryRow], seeds: tuple[int, ...],
                  results: dict[str, list[RunResult]] | None = None,
                  pairs: list[PairRow] | None = None,
                  budget: list[BudgetPoint] | None = None, test_note: str = "") -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "results.csv") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].csv_row()), lineterminator="\n")
        w.writeheader()
        w.writerows(r.csv_row() for r in rows)
    runs = [run_row(r) for rs in (results or {}).values() for r in rs]
    if runs:
        with atomic_open(out / "runs.csv") as fh:
            w = csv.DictWriter(fh, fieldnames=RUN_COLUMNS, extrasaction="ignore",
                               lineterminator="\n")
            w.writeheader()
            w.writerows(runs)
    show = [("spec @ sens 1", "specificity_at_full_sensitivity"), ("AUC", "auc"),
            ("sensitivity", "sensitivity"), ("specificity", "specificity"),
            ("θ1 alone: AUC", "theta1_auc"),
            ("θ1 alone: spec @ sens 1", "theta1_specificity_at_full_sensitivity")]
    lines = [f"Seeds: {', '.join(map(str, seeds))} (mean ± std over seeds)",
             *([test_note] if test_note else []), "",
             "| mode | center | " + " | ".join(h for h, _ in show) + " |",
             "|---|---|" + "---|" * len(show)]
    for row in rows:
        cells = [_pm(row.mean[k], row.std[k], row.seeds) for _, k in show]
        lines.append(f"| {row.variant} | {row.center} | " + " | ".join(cells) + " |")
    if runs:
        lines += ["", "Every run (selected round: the one whose θ2 the criterion chose; "
                  "tied: share of test slides whose score equals another's):", "",
                  "| mode | seed | selected round | AUC | spec @ sens 1 | θ1 AUC | tied | "
                  "train s |", "|---|---|---|---|---|---|---|---|"]
        for rr in (r for rs in (results or {}).values() for r in rs):
            sel = "-" if rr.selected_round is None else str(rr.selected_round)
            m = rr.evaluation.overall
            lines.append(f"| {rr.variant} | {rr.seed} | {sel} | {m.auc:.3f} | "
                         f"{m.specificity_at_full_sensitivity:.3f} | "
                         f"{_theta1_value(rr.theta1, 'theta1_auc'):.3f} | "
                         f"{m.tied_fraction:.2f} | {rr.train_seconds:.0f} |")
    lines += paired_markdown(pairs or [])
    lines += budget_markdown(budget or [])
    write_text(out / "results.md", "\n".join(lines) + "\n")


def _pm(mean: float, std: float, n: int) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def roc_overlay(path: Path, preds: dict[str, Path], labels_csv: Path) -> None:
    labels, _ = read_labels(labels_csv)
    curves = {}
    for name, pred in preds.items():
        scores = read_predictions(pred / "predictions.csv")
        ids = [i for i in scores if i in labels]
        curves[name] = (np.array([scores[i] for i in ids]), np.array([labels[i] for i in ids]))
    roc_figure(path, curves)


def heatmap_grid(path: Path, preds: dict[str, Path], data_dir: Path, n_each: int = 2) -> None:
    """A few test slides (rows) x modes (columns), like the paper's Fig. 5."""
    test = [s for s in load_dataset(data_dir).split("test") if s.label is not None]
    chosen = ([s for s in test if s.label == 1][:n_each] +
              [s for s in test if s.label == 0][:n_each])
    if not chosen or not preds:
        return
    fig = Figure(figsize=(2.8 * len(preds), 2.8 * len(chosen)))
    axes = fig.subplots(len(chosen), len(preds), squeeze=False)
    for r, rec in enumerate(chosen):
        for c, (name, pred) in enumerate(preds.items()):
            ax = axes[r][c]
            png = pred / "heatmaps" / f"{rec.slide_id}.png"
            if png.is_file():
                bgr = cv2.imdecode(np.fromfile(png, np.uint8), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise MixsupError("cannot read heatmap image",
                                      "delete it and re-run the prediction", png)
                ax.imshow(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            p = json.loads((pred / "slides" / f"{rec.slide_id}.json").read_text())
            ax.set_title(f"{name}\n{rec.slide_id} (y={rec.label}) p={p['probability']:.2f}",
                         fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    save_png(fig, path, dpi=90)
