"""Scoring commands: predict and evaluate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mixsup.cli.common import (
    Command,
    cli_overrides,
    file_arg,
    in_arg,
    mpp_arg,
    out_arg,
    print_metrics,
)
from mixsup.errors import MixsupError


def register(sub: argparse._SubParsersAction) -> dict[str, Command]:
    p = sub.add_parser("predict", help="score slides with a trained run's model bundle")
    p.add_argument("run", type=in_arg, help="run folder (or its bundle/ folder)")
    p.add_argument("slides", nargs="*", type=in_arg, help="slide files or folders")
    p.add_argument("--data", default=None, type=in_arg, help="dataset directory (with --split)")
    p.add_argument("--split", default=None, choices=["train", "val", "test"])
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--threshold", type=float, default=None,
                   help="operating threshold (default: the bundle's, chosen on val)")
    p.add_argument("--strict", action="store_true", help="fail on the first bad slide")
    p.add_argument("--config", action="append", default=[], metavar="FILE.yaml", type=in_arg)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a runtime or reader setting, e.g. --set runtime.device=cuda")
    p.add_argument("--mpp", type=mpp_arg, default=None, help="MPP for slides without metadata")
    p.add_argument("--features", type=file_arg("--features"), default=None, metavar="FOLDER",
                   help="abmil bundles: the slides' cached features (TRIDENT's .h5 folder for a "
                   "bundle trained on them, else a `mixsup features` folder of the bundle's "
                   "encoder); default: the training's feature folder")

    p = sub.add_parser("evaluate", help="metrics, ROC and report from predictions.csv")
    p.add_argument("predictions", type=in_arg)
    p.add_argument("--labels", required=True, type=in_arg, help="slides.csv with slide_id,label")
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--threshold", type=float, default=None,
                   help="operating threshold in [0, 1] (default: predict.json's, else 0.5)")
    return {"predict": cmd_predict, "evaluate": cmd_evaluate}


def cmd_predict(args: argparse.Namespace) -> int:
    from mixsup.methods.bundle import read_bundle
    from mixsup.predict.engine import collect_inputs, dataset_outlines, predict, predict_config
    from mixsup.runtime.dist import close_dist, init_dist

    bundle = read_bundle(args.run)
    overrides = cli_overrides(args)
    if args.features is not None:
        if not bundle.mode.cached_features:
            raise MixsupError(f"--features is for abmil bundles; this one is {bundle.mode.name}",
                              "leave --features out", bundle.dir)
        overrides.append(f"abmil.features={json.dumps(args.features)}")  # never read as YAML
    cfg = predict_config(bundle, args.config, overrides)
    inputs = collect_inputs(args.slides, args.data, args.split)
    dist = init_dist(cfg.runtime.device)
    try:
        result = predict(bundle, inputs, args.out, cfg, strict=args.strict,
                         progress=not args.quiet, threshold=args.threshold, dist=dist,
                         outlines=dataset_outlines(args.data))
    finally:
        close_dist(dist)
    if not dist.main:
        return 0
    for r in result.rows:
        print(f"{r.slide_id:<24} p={r.probability:.4f} -> {r.prediction}")
    for sid, why in result.skipped.items():
        print(f"skipped {sid}: {why}")
    print(f"wrote {result.out / 'predictions.csv'} ({len(result.rows)} slides)")
    return 1 if result.skipped and not result.rows else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mixsup.evaluate.report import evaluate

    m = evaluate(args.predictions, args.labels, args.out, args.threshold)
    print_metrics(m.overall)
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0
