"""Command line: parse arguments, build the config, call the library, print. No logic here."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

from mixsup import __version__
from mixsup.errors import MixsupError


def _config_args(p: argparse.ArgumentParser, default_preset: str = "paper") -> None:
    p.add_argument("--preset", default=default_preset, choices=["paper", "small"],
                   help=f"settings preset (default: {default_preset})")
    p.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                   help="YAML file overriding the preset (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one setting, e.g. --set tiling.mpp=1.0 (repeatable)")
    p.add_argument("--mpp", type=float, default=None,
                   help="microns per pixel for slides whose metadata has none")


def _load_cfg(args: argparse.Namespace):
    from mixsup.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "mpp", None) is not None:
        overrides.append(f"reader.mpp={args.mpp}")
    return load_config(args.preset, args.config, overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixsup", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mixsup {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="print a slide's metadata as JSON")
    p.add_argument("slide")
    p.add_argument("--backend", default="auto", choices=["auto", "openslide", "tiffslide"])
    p.add_argument("--mpp", type=float, default=None, help="MPP override")

    p = sub.add_parser("synth", help="generate a dataset of pyramidal TIFF slides")
    p.add_argument("out")
    p.add_argument("--kind", choices=["shapes", "pcam"], default="shapes")
    p.add_argument("--n-slides", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="slide side in level-0 pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pcam", default="../shared/data/pcam",
                   help="PatchCamelyon folder (for --kind pcam)")
    p.add_argument("--patients", type=int, default=None,
                   help="pcam only: N patients x 5 lymph nodes with Camelyon17 node classes")

    p = sub.add_parser("validate", help="check a dataset directory and its annotations")
    p.add_argument("data")
    _config_args(p)

    p = sub.add_parser("tile", help="tissue-detect and tile every slide of a dataset")
    p.add_argument("data")
    p.add_argument("--out", default=None, help="tiles folder (default: DATA/tiles/<settings>)")
    p.add_argument("--strict", action="store_true", help="fail on the first bad slide")
    _config_args(p)

    p = sub.add_parser("annotations", help="convert annotations to GeoJSON or a mask PNG")
    p.add_argument("source", help="ASAP/ImageScope XML, QuPath GeoJSON or NCRF JSON")
    p.add_argument("dest", help="output .geojson or .png")
    p.add_argument("--slide", default=None, help="slide, for the mask size and bounds checks")
    p.add_argument("--downsample", type=float, default=32.0, help="mask pixel size (level 0 px)")
    _config_args(p)

    p = sub.add_parser("train", help="train θ1 (and, later, θ2) on a dataset")
    p.add_argument("data")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--mode", choices=["mixed", "pixel", "image"], default="mixed",
                   help="mixed (the method), pixel (θ1 on pixel labels only, then θ2), "
                        "image (top-k MIL on slide labels only)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--strict", action="store_true", help="fail on the first bad slide")
    p.add_argument("--weights", default=None, help="local pretrained encoder weights")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--select-by", choices=["train_loss", "val"], default=None,
                   help="round selection: lowest θ2 training loss (paper) or val loss")
    _config_args(p)

    p = sub.add_parser("predict", help="score slides with a trained run's model bundle")
    p.add_argument("run", help="run folder (or its bundle/ folder)")
    p.add_argument("slides", nargs="*", help="slide files or folders")
    p.add_argument("--data", default=None, help="dataset directory (with --split)")
    p.add_argument("--split", default=None, choices=["train", "val", "test"])
    p.add_argument("--out", required=True)
    p.add_argument("--threshold", type=float, default=None,
                   help="operating threshold (default: the bundle's, chosen on val)")
    p.add_argument("--strict", action="store_true", help="fail on the first bad slide")
    p.add_argument("--config", action="append", default=[], metavar="FILE.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a runtime setting, e.g. --set runtime.device=cuda")
    p.add_argument("--mpp", type=float, default=None, help="MPP for slides without metadata")

    p = sub.add_parser("evaluate", help="metrics, ROC and report from predictions.csv")
    p.add_argument("predictions")
    p.add_argument("--labels", required=True, help="slides.csv with slide_id,label")
    p.add_argument("--out", required=True)
    p.add_argument("--threshold", type=float, default=None)

    p = sub.add_parser("experiment", help="compare modes (and ablations) over seeds")
    p.add_argument("data")
    p.add_argument("--out", required=True)
    p.add_argument("--modes", default="mixed,pixel,image")
    p.add_argument("--seeds", default="0")
    p.add_argument("--ablate", action="append", default=[],
                   metavar="pixel-labels=200,100 | slides=1,0.5")
    p.add_argument("--per-center", action="store_true")
    _config_args(p, default_preset="small")

    p = sub.add_parser("stage", help="Camelyon17: lymph-node classes and patient pN stages")
    stage = p.add_subparsers(dest="stage_command", required=True)
    q = stage.add_parser("train", help="heatmap features + random forest on node classes")
    q.add_argument("run", help="a trained run (its θ1 makes the heatmaps)")
    q.add_argument("--data", required=True, help="dataset with patient and node_class columns")
    q.add_argument("--split", default="train")
    q.add_argument("--heatmap-um", type=float, default=16.0, help="heatmap pixel size (µm)")
    q.add_argument("--folds", type=int, default=5)
    q = stage.add_parser("predict", help="node classes and pN stages (Camelyon17 CSV)")
    q.add_argument("run")
    q.add_argument("--data", required=True)
    q.add_argument("--split", default="test")
    q.add_argument("--out", required=True)
    q = stage.add_parser("evaluate", help="quadratic-weighted kappa of pN stages")
    q.add_argument("predictions", help="Camelyon17-format CSV (patient and/or node rows)")
    q.add_argument("--labels", required=True, help="e.g. stage_labels.csv")
    q.add_argument("--out", required=True)

    p = sub.add_parser("rounds", help="θ1's map quality per round against truth outlines")
    p.add_argument("run")
    p.add_argument("--data", required=True, help="dataset with truth/<slide_id>.geojson")

    p = sub.add_parser("config", help="print the full configuration as YAML")
    _config_args(p)

    p = sub.add_parser("demo", help="run the main job end to end on the embedded shapes dataset")
    p.add_argument("--out", default="demo-out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    try:
        return int(COMMANDS[args.command](args) or 0)
    except MixsupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cmd_info(args: argparse.Namespace) -> int:
    from mixsup.slides import open_slide

    with open_slide(args.slide, backend=args.backend, mpp=args.mpp) as slide:
        print(json.dumps(slide.info.as_dict(), indent=2))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.kind == "shapes":
        from mixsup.synth.shapes import make_shapes

        out = make_shapes(args.out, n_slides=args.n_slides or 20, size=args.size or 1280,
                          seed=args.seed, progress=not args.quiet)
    else:
        from mixsup.synth.pcam import make_pcam

        out = make_pcam(args.out, args.pcam, n_slides=args.n_slides or 60,
                        size=args.size or 3072, seed=args.seed, patients=args.patients,
                        progress=not args.quiet)
    _print_dataset(out)
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from mixsup.labels.annotations import read_annotations
    from mixsup.labels.table import load_dataset
    from mixsup.slides import open_slide

    cfg = _load_cfg(args)
    ds = load_dataset(args.data)
    for rec in ds.slides:
        if rec.annotation is not None:
            with open_slide(rec.path, cfg.reader.backend, cfg.reader.mpp) as slide:
                dims = slide.dimensions
            read_annotations(rec.annotation, cfg.annotations, dims)
    _print_dataset(args.data)
    print("dataset OK")
    return 0


def _print_dataset(root: str | Path) -> None:
    from mixsup.labels.table import load_dataset

    ds = load_dataset(root)
    print(f"{'split':<6} {'slides':>6} {'pos':>5} {'neg':>5} {'unlab':>5} {'annot':>5}")
    for split, row in ds.summary().items():
        print(f"{split:<6} {row['slides']:>6} {row['positive']:>5} {row['negative']:>5} "
              f"{row['unlabelled']:>5} {row['annotated']:>5}")


def cmd_tile(args: argparse.Namespace) -> int:
    from mixsup.labels.table import load_dataset
    from mixsup.tile_dataset import tile_dataset

    cfg = _load_cfg(args)
    ds = load_dataset(args.data)
    out = Path(args.out) if args.out else default_tiles_dir(ds.root, cfg)
    report = tile_dataset(ds, cfg, out, strict=args.strict, progress=not args.quiet)
    _print_tiling(report, out)
    return 1 if report.skipped and not report.tiles else 0


def default_tiles_dir(root: Path, cfg) -> Path:
    t = cfg.tiling
    return root / "tiles" / f"mpp{t.mpp:g}_p{t.patch_size}_o{t.overlap}"


def _print_tiling(report, out: Path) -> None:
    s = report.summary()
    secs = list(report.seconds.values())
    mean = sum(secs) / len(secs) if secs else 0.0
    print(f"tiled {s['slides_tiled']} slide(s): {s['patches']} patches, "
          f"{mean:.2f} s per slide on average -> {out}")
    if report.no_tissue:
        print(f"no tissue on: {', '.join(report.no_tissue)}")
    for sid, reason in report.skipped.items():
        print(f"skipped {sid}: {reason}")


def cmd_annotations(args: argparse.Namespace) -> int:
    import cv2

    from mixsup.atomic import atomic_path
    from mixsup.labels.annotations import read_annotations, write_geojson
    from mixsup.slides import open_slide

    cfg = _load_cfg(args)
    dims = None
    if args.slide:
        with open_slide(args.slide, mpp=cfg.reader.mpp or 1.0) as slide:
            dims = slide.dimensions
    ann = read_annotations(args.source, cfg.annotations, dims)
    dest = Path(args.dest)
    if dest.suffix.lower() in (".geojson", ".json"):
        write_geojson(dest, ann)
    elif dest.suffix.lower() == ".png":
        if dims is None:
            *_, maxx, maxy = ann.tumor.union(ann.labelled_area or ann.tumor).bounds
            dims = (int(maxx) + 1, int(maxy) + 1)
        w, h = (max(1, round(d / args.downsample)) for d in dims)
        mask = ann.rasterize(0, 0, w, h, args.downsample)
        with atomic_path(dest, suffix=".png") as tmp:
            cv2.imwrite(str(tmp), mask)
    else:
        raise MixsupError("unknown output type", "name the output .geojson or .png", dest)
    print(f"wrote {dest} ({len(ann.regions)} outlines)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mixsup.dist import close_dist, init_dist
    from mixsup.train.api import train

    if args.weights:
        args.overrides.append(f"model.weights={args.weights}")
    if args.seed is not None:
        args.overrides.append(f"seed={args.seed}")
    if args.select_by:
        args.overrides.append(f"stage2.select_by={args.select_by}")
    cfg = _load_cfg(args)
    dist = init_dist(cfg.runtime.device)
    try:
        result = train(args.data, args.out, cfg, mode=args.mode, resume=args.resume,
                       strict=args.strict, progress=not args.quiet, dist=dist)
    finally:
        close_dist(dist)
    if not dist.main:
        return 0
    s = result.summary
    if s["mode"] == "image":
        print("MIL epoch losses:", " ".join(f"{v:.4f}" for v in s["mil_epoch_losses"]))
        print(f"operating threshold {s['operating_threshold']:.4f} ({s['threshold_source']})")
        print(f"run folder: {result.run_dir}; model bundle: {s['bundle']}")
        return 0
    print(f"{'round':>5} {'θ1 loss':>8} {'y_p':>6} {'y_p+':>6} {'y_p-':>6} {'pseudo+px':>9} "
          f"{'pos px':>7} {'neg px':>7} {'θ2 train':>9} {'θ2 val':>7}")
    for r in s["rounds"]:
        pools = r["pools"] or {}
        mark = " *" if r["round"] == s["selected_round"] else ""
        print(f"{r['round']:>5} {r['final_loss'] or float('nan'):>8.4f} "
              f"{pools.get('fine', 0):>6} {pools.get('pseudo_positive', 0):>6} "
              f"{pools.get('hard_negative', 0):>6} "
              f"{r['pseudo_positive_pixel_fraction'] or 0:>9.3f} "
              f"{r['map_stats']['positive_slides_pixel_fraction']:>7.3f} "
              f"{r['map_stats']['negative_slides_pixel_fraction']:>7.3f} "
              f"{r['stage2_train_loss']:>9.4f} {_fmt(r['stage2_val_loss']):>7}{mark}")
    print(f"selected round {s['selected_round']} (by {s['select_by']}); operating threshold "
          f"{s['operating_threshold']:.4f} ({s['threshold_source']})")
    print(f"run folder: {result.run_dir}; model bundle: {s['bundle']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mixsup.dist import close_dist, init_dist
    from mixsup.predict import bundle_config, collect_inputs, predict

    overrides = list(args.overrides)
    if args.mpp is not None:
        overrides.append(f"reader.mpp={args.mpp}")
    cfg = bundle_config(args.run, args.config, overrides)
    inputs = collect_inputs(args.slides, args.data, args.split)
    dist = init_dist(cfg.runtime.device)
    try:
        result = predict(args.run, inputs, args.out, cfg, strict=args.strict,
                         progress=not args.quiet, threshold=args.threshold, dist=dist)
    finally:
        close_dist(dist)
    if not dist.main:
        return 0
    for r in result.rows:
        print(f"{r['slide_id']:<24} p={r['probability']:.4f} -> {r['prediction']}")
    for sid, why in result.skipped.items():
        print(f"skipped {sid}: {why}")
    print(f"wrote {result.out / 'predictions.csv'} ({len(result.rows)} slides)")
    return 1 if result.skipped and not result.rows else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mixsup.evaluate.report import evaluate

    m = evaluate(args.predictions, args.labels, args.out, args.threshold)
    print_metrics(m)
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def print_metrics(m: dict) -> None:
    keys = ["n_pos", "n_neg", "auc", "specificity_at_full_sensitivity",
            "threshold_at_full_sensitivity", "sensitivity", "specificity", "operating_threshold"]
    width = max(map(len, keys))
    for k in keys:
        v = m[k]
        print(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")


def cmd_experiment(args: argparse.Namespace) -> int:
    from mixsup.experiment import run_experiment

    overrides = list(args.overrides)
    if args.mpp is not None:
        overrides.append(f"reader.mpp={args.mpp}")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    bad = [m for m in modes if m not in ("mixed", "pixel", "image")]
    if bad:
        raise MixsupError(f"unknown mode(s) {', '.join(bad)}", "use mixed, pixel, image")
    seeds = tuple(int(s) for s in args.seeds.split(","))
    try:
        rows = run_experiment(args.data, args.out, args.preset, modes, seeds,
                              tuple(args.ablate), tuple(args.config), tuple(overrides),
                              args.per_center, progress=not args.quiet)
    except ValueError as exc:
        raise MixsupError(str(exc), "see mixsup experiment --help") from None
    print(Path(args.out, "results.md").read_text(), end="")
    print(f"{len(rows)} row(s) -> {Path(args.out) / 'results.csv'}")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    from mixsup.camelyon.evaluate import evaluate_stages
    from mixsup.camelyon.workflow import stage_predict, stage_train

    if args.stage_command == "train":
        r = stage_train(args.run, args.data, args.split, args.heatmap_um, args.folds,
                        progress=not args.quiet)
        print(f"node classifier on {r['slides']} slides: cross-validated accuracy "
              f"{r['cv_accuracy']:.3f} (size rule: {r['rule_accuracy']:.3f})")
        return 0
    if args.stage_command == "predict":
        r = stage_predict(args.run, args.data, args.out, args.split, progress=not args.quiet)
        print(f"staged {r['patients']} patient(s) from {r['slides']} slides -> "
              f"{Path(args.out) / 'submission.csv'} (size rule: submission_rule.csv)")
        return 0
    m = evaluate_stages(args.predictions, args.labels, args.out)
    print(f"patients {m['n_patients']}  kappa {m['kappa']:.4f}  accuracy {m['accuracy']:.4f}")
    print("confusion matrix (rows true, columns predicted):", " ".join(m["labels"]))
    for label, row in zip(m["labels"], m["confusion_matrix"], strict=True):
        print(f"  {label:<8} {' '.join(f'{v:>4}' for v in row)}")
    return 0


def cmd_rounds(args: argparse.Namespace) -> int:
    from mixsup.evaluate.map_quality import round_map_quality, write_quality

    rows = round_map_quality(args.run, args.data)
    write_quality(Path(args.run) / "map_quality.json", rows)
    print(f"{'round':>5} {'IoU (pos slides)':>17} {'mean slide IoU':>15} {'pos frac (neg)':>15}")
    for r in rows:
        print(f"{r['round']:>5} {r['iou_positive_slides']:>17.4f} {r['mean_slide_iou']:>15.4f} "
              f"{r['negative_slides_positive_fraction']:>15.4f}")
    return 0


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def cmd_config(args: argparse.Namespace) -> int:
    from mixsup.config import config_to_yaml

    print(config_to_yaml(_load_cfg(args)), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mixsup.config import load_config
    from mixsup.evaluate.report import evaluate
    from mixsup.predict import collect_inputs, predict
    from mixsup.synth.shapes import make_shapes
    from mixsup.train.api import train

    out = Path(args.out)
    data, run, pred, report = out / "data", out / "run", out / "pred", out / "report"
    start = time.perf_counter()
    print(f"[1/4] generating the embedded shapes dataset in {data}")
    if not (data / "slides.csv").is_file():
        make_shapes(data, progress=not args.quiet)
    _print_dataset(data)
    print(f"[2/4] training (small preset: θ1 init + EM rounds, θ2 per round) into {run}")
    cfg = load_config("small")
    result = train(data, run, cfg, resume=(run / "config.yaml").is_file(),
                   progress=not args.quiet)
    s = result.summary
    print(f"      selected round {s['selected_round']}, threshold "
          f"{s['operating_threshold']:.4f}")
    print(f"[3/4] predicting the test split into {pred}")
    predict(run, collect_inputs([], str(data), "test"), pred, progress=not args.quiet)
    print(f"[4/4] evaluating into {report}")
    metrics = evaluate(pred / "predictions.csv", data / "slides.csv", report)
    print_metrics(metrics)
    print(f"done in {time.perf_counter() - start:.0f} s: see {report / 'report.md'}, "
          f"{run / 'figures'} and {pred / 'heatmaps'}")
    return 0


COMMANDS = {
    "info": cmd_info,
    "synth": cmd_synth,
    "validate": cmd_validate,
    "tile": cmd_tile,
    "annotations": cmd_annotations,
    "train": cmd_train,
    "predict": cmd_predict,
    "evaluate": cmd_evaluate,
    "experiment": cmd_experiment,
    "stage": cmd_stage,
    "rounds": cmd_rounds,
    "config": cmd_config,
    "demo": cmd_demo,
}


if __name__ == "__main__":
    sys.exit(main())
