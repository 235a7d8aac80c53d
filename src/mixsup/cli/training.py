"""Training commands: train, experiment, rounds, config, demo."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mixsup.cli.common import (
    Command,
    cli_overrides,
    config_args,
    file_arg,
    fmt,
    in_arg,
    int_in,
    load_cfg,
    out_arg,
    plain_in_arg,
    print_dataset,
    print_metrics,
    text_arg,
)
from mixsup.errors import MixsupError
from mixsup.experiment.cluster import LAUNCHERS
from mixsup.methods.registry import MODES

if TYPE_CHECKING:
    from mixsup.train.results import TrainSummary


def register(sub: argparse._SubParsersAction) -> dict[str, Command]:
    p = sub.add_parser("train", help="train θ1 (EM rounds) and θ2 on a dataset")
    p.add_argument("data", type=in_arg)
    p.add_argument("--out", required=True, type=out_arg, help="run folder")
    p.add_argument("--mode", choices=list(MODES), default="mixed",
                   help="; ".join(f"{m.name}: {m.help}" for m in MODES.values()))
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--strict", action="store_true", help="fail on the first bad slide")
    p.add_argument("--weights", type=file_arg("--weights"), default=None,
                   help="local pretrained encoder weights")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--select-by", choices=["train_curve", "train_loss", "val"], default=None,
                   help="round selection: lowest θ2 training loss (paper) or val loss")
    config_args(p)

    p = sub.add_parser("features", help="cache a frozen encoder's features of every tissue "
                       "patch (for --mode abmil), one zarr store per slide")
    p.add_argument("data", type=in_arg)
    p.add_argument("--out", required=True, type=out_arg,
                   help="feature folder (one per encoder)")
    p.add_argument("--encoder", type=text_arg("--encoder"), default=None,
                   help="timm name or recipe (uni, virchow2, ...): abmil.encoder; its other "
                   "settings go in --set abmil.*")
    p.add_argument("--weights", type=file_arg("--weights"), default=None,
                   help="local encoder weights file: abmil.weights")
    p.add_argument("--splits", default="train,val,test")
    config_args(p)  # the same default preset as train, so that train reads these features

    p = sub.add_parser("experiment", help="compare modes (and ablations) over seeds")
    p.add_argument("data", type=in_arg)
    p.add_argument("--out", required=True, type=out_arg,
                   help="experiment folder (runs/, tables; re-running resumes)")
    p.add_argument("--modes", type=modes_arg, default=tuple(MODES),
                   help=f"comma-separated, each once (default {','.join(MODES)})")
    p.add_argument("--seeds", type=seeds_arg, default=(0,),
                   help="comma-separated integers from 0 to 2**32-1, each once (default 0)")
    p.add_argument("--ablate", action="append", default=[],
                   metavar="pixel-slides=12,6,3,1 | pixel-labels=200,100 | slides=1,0.5 | "
                           "pseudo-labels=confident | keep-top=4 | teacher=average | "
                           "fine-tumour=0.5 | stage2-epochs=5 | em-ratio=2-3-5")
    p.add_argument("--per-center", action="store_true")
    p.add_argument("--test-data", default=None, metavar="OTHER", type=in_arg,
                   help="score the runs on OTHER's test split (an external test set) instead "
                        "of DATA's: each run keeps those predictions in pred-<OTHER's name>/, "
                        "the tables go to OUT/test-<OTHER's name>/, and a run trains only if "
                        "it has not yet")
    p.add_argument("--no-base", action="store_true",
                   help="run only the --ablate variants, not each mode's plain run (e.g. more "
                        "seeds at one label budget)")
    p.add_argument("--folds", type=int_in(3, 50, "--folds"), default=0, metavar="K",
                   help="grouped cross-validation: every labelled slide is a test slide once "
                   "(StratifiedGroupKFold by label and pixel labels, grouped by the patient "
                   "column); fold f tests on fold f, validates on f+1, trains on the rest; "
                   "tables in OUT/cv from the pooled predictions")
    p.add_argument("--no-share", action="store_true",
                   help="every run does all its own work: no pixel run starts from its mixed "
                   "sibling's round 0, no stage-2 variant from its plain run's θ1 rounds, no "
                   "run from the experiment's tilings (for timing the sharing)")
    p.add_argument("--jobs", type=int_in(1, 256, "--jobs"), default=1, metavar="N",
                   help="runs at once, each in its own process with 1/N of the CPU cores "
                        "(default 1: one after the other, in this process)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="processes",
                   help="processes: --jobs local processes (default); slurm: each run a Slurm "
                   "job (submitit), the tables gathered when all have finished; submitit-local: "
                   "the same jobs on this machine, to try a cluster setup")
    p.add_argument("--partition", type=text_arg("--partition"), default=None,
                   help="the Slurm partition (with --launcher slurm)")
    p.add_argument("--time-min", type=int_in(1, 100000, "--time-min"), default=240,
                   metavar="MIN", help="each job's time limit in minutes (default 240)")
    p.add_argument("--cpus-per-run", type=int_in(1, 1024, "--cpus-per-run"), default=8,
                   metavar="N", help="CPU cores per cluster job (default 8)")
    p.add_argument("--gpus-per-run", type=int_in(0, 64, "--gpus-per-run"), default=0,
                   metavar="N", help="GPUs per Slurm job (default 0)")
    p.add_argument("--mem-gb", type=int_in(1, 100000, "--mem-gb"), default=32,
                   metavar="GB", help="memory per Slurm job (default 32)")
    config_args(p, default_preset="small")

    p = sub.add_parser("rounds", help="θ1's map quality per round against truth outlines")
    p.add_argument("run", type=plain_in_arg, help="a training run's folder (`mixsup train "
                   "--out`, or an experiment's runs/<run>/train)")
    p.add_argument("--data", required=True, metavar="DATA", type=in_arg,
                   help="the dataset the run trained on")
    p.add_argument("--truth", default=None, type=plain_in_arg, help="answer key: "
                   "<slide_id>.geojson true outlines (default: DATA-truth, as `mixsup synth` "
                   "writes it)")
    p.add_argument("--split", default=None, help="score each round's θ1 on these slides it did "
                   "not train on (e.g. val,test) instead of the training slides' E-step maps")

    p = sub.add_parser("config", help="print the full configuration as YAML")
    config_args(p)

    p = sub.add_parser("demo", help="run the main job end to end on the embedded shapes dataset")
    p.add_argument("--out", default="demo-out", type=out_arg)
    return {"train": cmd_train, "features": cmd_features, "experiment": cmd_experiment,
            "rounds": cmd_rounds,
            "config": cmd_config, "demo": cmd_demo}


def cmd_train(args: argparse.Namespace) -> int:
    from mixsup.runtime.dist import close_dist, init_dist
    from mixsup.train.api import train

    if args.weights is not None:  # the encoder the mode trains first: model.*, mil.*, abmil.*
        args.overrides.append(f"{MODES[args.mode].section}.weights={verbatim(args.weights)}")
    if args.seed is not None:
        args.overrides.append(f"seed={args.seed}")
    if args.select_by:
        args.overrides.append(f"stage2.select_by={args.select_by}")
    cfg = load_cfg(args)
    dist = init_dist(cfg.runtime.device)
    try:
        result = train(args.data, args.out, cfg, mode=args.mode, resume=args.resume,
                       strict=args.strict, progress=not args.quiet, dist=dist)
    finally:
        close_dist(dist)
    if not dist.main:
        return 0
    if result.summary is not None:
        print_train_summary(result.summary, result.run_dir)
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from mixsup.inference.features import extract_dataset
    from mixsup.runtime.dist import close_dist, init_dist

    if args.encoder is not None:
        args.overrides.append(f"abmil.encoder={verbatim(args.encoder)}")
    if args.weights is not None:
        args.overrides.append(f"abmil.weights={verbatim(args.weights)}")
    cfg = load_cfg(args)
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    bad = sorted(set(splits) - {"train", "val", "test"})
    if bad or not splits:
        raise MixsupError(f"unknown split {', '.join(bad) or '(none)'}",
                          "pass --splits as a comma list of train, val, test")
    dist = init_dist(cfg.runtime.device)
    try:
        result = extract_dataset(args.data, args.out, cfg, splits, not args.quiet, dist)
    finally:
        close_dist(dist)
    if dist.main:
        for sid, why in result.skipped.items():
            print(f"skipped {sid}: {why}")
        print(f"wrote the {cfg.abmil.encoder} features of {result.patches} patches "
              f"({result.slides} slides, {result.dim} values each) to {result.out}")
    return 0


def print_train_summary(s: TrainSummary, run_dir: Path) -> None:
    if s.mil_epoch_losses is not None:
        print("MIL epoch losses:", " ".join(f"{v:.4f}" for v in s.mil_epoch_losses))
    else:
        print(f"{'round':>5} {'θ1 loss':>8} {'y_p':>6} {'y_p+':>6} {'y_p-':>6} "
              f"{'pseudo+px':>9} {'pos px':>7} {'neg px':>7} {'θ2 curve':>9} {'θ2 train':>9} "
              f"{'θ2 val':>7}")
        for r in s.rounds:
            mark = " *" if r.round == s.selected_round else ""
            print(f"{r.round:>5} {fmt(r.final_loss):>8} {r.pools.fine:>6} "
                  f"{r.pools.pseudo_positive:>6} {r.pools.hard_negative:>6} "
                  f"{r.pseudo_positive_pixel_fraction:>9.3f} "
                  f"{r.map_stats.positive_slides_pixel_fraction:>7.3f} "
                  f"{r.map_stats.negative_slides_pixel_fraction:>7.3f} "
                  f"{fmt(r.stage2_train_curve):>9} {fmt(r.stage2_train_loss):>9} "
                  f"{fmt(r.stage2_val_loss):>7}{mark}" + ("  collapsed" if r.collapsed else ""))
        rule = s.selection.rule if s.selection else ""
        print(f"selected round {s.selected_round} ({rule})")
    print(f"operating threshold {s.operating_threshold:.4f} ({s.threshold_source})")
    print(f"run folder: {run_dir}; model bundle: {s.bundle}")


def verbatim(value: str) -> str:
    """``value`` as a ``--set`` override reads it: a quoted YAML string, so that a path or a
    name is never read as YAML (``null``, ``~``, a ``#`` comment)."""
    return json.dumps(value)


def _listed(raw: str, flag: str) -> list[str]:
    items = [x.strip() for x in raw.split(",")]
    if not raw.strip() or any(not x for x in items):
        raise argparse.ArgumentTypeError(f"{flag} takes a comma-separated list with no empty "
                                         f"item (got {raw!r})")
    twice = sorted({x for x in items if items.count(x) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{flag} names {', '.join(twice)} more than once: a "
                                         "repeated run would count twice in the statistics")
    return items


def modes_arg(raw: str) -> tuple[str, ...]:
    items = _listed(raw, "--modes")
    unknown = [m for m in items if m not in MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"--modes: unknown mode {unknown[0]!r}; use "
                                         f"{', '.join(MODES)}")
    return tuple(items)


def seeds_arg(raw: str) -> tuple[int, ...]:
    items = _listed(raw, "--seeds")
    bad = [x for x in items if not x.isdigit() or int(x) >= 2 ** 32]
    if bad:
        raise argparse.ArgumentTypeError(f"--seeds: {bad[0]!r} is not an integer from 0 to "
                                         "2**32-1")
    seeds = tuple(int(x) for x in items)
    if len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError("--seeds names a seed more than once (as 0 and 00?)")
    return seeds


def cmd_experiment(args: argparse.Namespace) -> int:
    from mixsup.experiment.cluster import Launcher
    from mixsup.experiment.core import run_experiment

    try:
        done = run_experiment(args.data, args.out, args.preset, args.modes, args.seeds,
                              tuple(args.ablate), tuple(args.config),
                              tuple(cli_overrides(args)),
                              args.per_center, progress=not args.quiet, workers=args.jobs,
                              base=not args.no_base, test_data=args.test_data,
                              folds=args.folds, share=not args.no_share,
                              launcher=Launcher(args.launcher, args.partition, args.time_min,
                                                args.cpus_per_run, args.gpus_per_run,
                                                args.mem_gb))
    except ValueError as exc:
        raise MixsupError(str(exc), "see mixsup experiment --help") from None
    print((done.tables / "results.md").read_text(), end="")
    print(f"{len(done.rows)} row(s) -> {done.tables / 'results.csv'}")
    return 0


def cmd_rounds(args: argparse.Namespace) -> int:
    from mixsup.evaluate.map_quality import (
        coverage_checks,
        default_truth,
        map_quality,
        round_map_quality,
        run_selected_round,
        run_threshold,
        run_top_k,
        write_quality,
    )
    from mixsup.labels.table import load_dataset

    run = Path(args.run)
    if not (run / "config.yaml").is_file() or not any(run.glob("round_*")):
        raise MixsupError("not a training run with rounds (no config.yaml and round_N folders)",
                          "pass a run folder of a segmenter mode: `mixsup train --out RUN`, or "
                          "an experiment's EXP/runs/<run>/train", run)
    splits = args.split.split(",") if args.split else []
    bad = [s for s in splits if s not in ("train", "val", "test")]
    if bad:
        raise MixsupError(f"--split {bad[0]!r} is not a split", "use train, val or test "
                          "(comma-separated)")
    truth = Path(args.truth) if args.truth else default_truth(Path(args.data))
    if not truth.is_dir():
        raise MixsupError("no answer key (true outlines)", "pass --truth KEY, the folder "
                          "`mixsup synth` wrote beside the dataset", truth)
    rows = [] if args.split else round_map_quality(args.run, args.data, truth)
    if args.split:
        from mixsup.inference.round_maps import heldout_maps

        labels = {s.slide_id: s.label for s in load_dataset(args.data).slides}
        k, threshold = run_top_k(Path(args.run)), run_threshold(Path(args.run))
        for split in splits:
            for rnd, maps in heldout_maps(args.run, args.data, split, not args.quiet).items():
                rows.append(map_quality(rnd, split, maps, labels, truth, k, threshold))
    if not rows:
        raise MixsupError("no round's maps to measure", "check that the run finished its "
                          "rounds and that DATA holds the slides it trained on (or --split "
                          "names a split with slides)", run)
    write_quality(Path(args.run) / "map_quality.json", rows)
    k = rows[0].top_k if rows else 0
    print(f"{'split':>5} {'round':>5} {'slides':>6} {'recall':>7} {'precision':>9} "
          f"{'IoU (pos)':>9} {'pos frac (neg)':>14} {f'top-{k} hits':>10} {f'top-{k} AUC':>10} "
          f"{'pos >= T':>8} {'neg >= T':>8}")
    for r in rows:
        print(f"{r.split:>5} {r.round:>5} {r.slides:>6} {r.recall_positive_slides:>7.4f} "
              f"{r.precision:>9.4f} {r.iou_positive_slides:>9.4f} "
              f"{r.negative_slides_positive_fraction:>14.4f} {r.topk_hit_rate:>10.3f} "
              f"{r.topk_slide_auc:>10.3f} {r.positive_slides_reaching_t:>8.3f} "
              f"{r.negative_slides_reaching_t:>8.3f}")
    selected = run_selected_round(Path(args.run))
    for check in coverage_checks(rows, selected) if selected is not None else []:
        print(check.line())
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from mixsup.config import config_to_yaml

    print(config_to_yaml(load_cfg(args)), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mixsup.config import load_config
    from mixsup.evaluate.report import evaluate
    from mixsup.predict.engine import collect_inputs, dataset_outlines, predict
    from mixsup.synth.shapes import make_shapes
    from mixsup.train.api import train

    out = Path(args.out)
    data, run, pred, report = out / "data", out / "run", out / "pred", out / "report"
    start = time.perf_counter()
    print(f"[1/4] generating the embedded shapes dataset in {data}")
    if not (data / "slides.csv").is_file():
        make_shapes(data, progress=not args.quiet)
    print_dataset(data)
    print(f"[2/4] training (tiny preset: θ1 init + EM rounds, θ2 per round) into {run}")
    cfg = load_config("tiny")
    result = train(data, run, cfg, resume=(run / "config.yaml").is_file(),
                   progress=not args.quiet)
    s = result.summary
    if s is not None:
        print(f"      selected round {s.selected_round}, threshold "
              f"{s.operating_threshold:.4f}")
    print(f"[3/4] predicting the test split into {pred}")
    predict(run, collect_inputs([], str(data), "test"), pred, progress=not args.quiet,
            outlines=dataset_outlines(data))
    print(f"[4/4] evaluating into {report}")
    metrics = evaluate(pred / "predictions.csv", data / "slides.csv", report)
    print_metrics(metrics.overall)
    print(f"done in {time.perf_counter() - start:.0f} s: see {report / 'report.md'}, "
          f"{run / 'figures'} and {pred / 'heatmaps'}")
    print(f"browse the slides with: mixsup view {pred} --data {data}")
    return 0
