"""Camelyon17 staging: stage train | predict | evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path

from mixsup.cli.common import Command, in_arg, out_arg


def register(sub: argparse._SubParsersAction) -> dict[str, Command]:
    p = sub.add_parser("stage", help="Camelyon17: lymph-node classes and patient pN stages")
    stage = p.add_subparsers(dest="stage_command", required=True)
    q = stage.add_parser("train", help="heatmap features + random forest on node classes")
    q.add_argument("run", type=in_arg, help="a trained run (its θ1 makes the heatmaps)")
    q.add_argument("--data", required=True, type=in_arg,
                   help="dataset with patient and node_class columns")
    q.add_argument("--features-from", default="auto",
                   choices=["auto", "heldout", "val", "train"],
                   help="slides whose heatmap features train the forest: heldout (train slides "
                        "θ1 did not train on), val, or train (all, including θ1's own: "
                        "optimistic); auto: heldout, else val, else train")
    q.add_argument("--heatmap-um", type=float, default=16.0, help="heatmap pixel size (µm)")
    q.add_argument("--folds", type=int, default=5)
    q = stage.add_parser("predict", help="node classes and pN stages (Camelyon17 CSV)")
    q.add_argument("run", type=in_arg)
    q.add_argument("--data", required=True, type=in_arg)
    q.add_argument("--split", default="test")
    q.add_argument("--out", required=True, type=out_arg)
    q = stage.add_parser("evaluate", help="quadratic-weighted kappa of pN stages")
    q.add_argument("predictions", type=in_arg,
                   help="Camelyon17-format CSV (patient and/or node rows)")
    q.add_argument("--labels", required=True, type=in_arg, help="e.g. stage_labels.csv")
    q.add_argument("--out", required=True, type=out_arg)
    return {"stage": cmd_stage}


def cmd_stage(args: argparse.Namespace) -> int:
    from mixsup.camelyon.evaluate import evaluate_stages
    from mixsup.camelyon.workflow import MIN_SLIDES, HeldOutScores, stage_predict, stage_train

    if args.stage_command == "train":
        r = stage_train(args.run, args.data, args.features_from, args.heatmap_um, args.folds,
                        progress=not args.quiet)
        print(f"node classifier on {r.slides} slides (features from {r.features_from}): "
              f"cross-validated accuracy {r.cv_accuracy:.3f} "
              f"(size rule: {r.rule_accuracy:.3f})")
        for scores, what in ((r.in_sample, "in-sample: slides θ1 trained on"),
                        (r.held_out, "held-out: slides θ1 did not train on")):
            held = f" ({scores.set})" if isinstance(scores, HeldOutScores) else ""
            print(f"  {what}{held}: " + (
                f"fewer than {MIN_SLIDES} with a node_class" if scores is None else
                f"{scores.slides} slides, cross-validated accuracy {scores.cv_accuracy:.3f} "
                f"(size rule: {scores.rule_accuracy:.3f})"))
        return 0
    if args.stage_command == "predict":
        p = stage_predict(args.run, args.data, args.out, args.split, progress=not args.quiet)
        print(f"staged {p.patients} patient(s) from {p.slides} slides -> "
              f"{Path(args.out) / 'submission.csv'} (size rule: submission_rule.csv)")
        return 0
    m = evaluate_stages(args.predictions, args.labels, args.out)
    print(f"patients {m.n_patients}  kappa {m.kappa:.4f}  accuracy {m.accuracy:.4f}")
    print("confusion matrix (rows true, columns predicted):", " ".join(m.labels))
    for label, row in zip(m.labels, m.confusion_matrix, strict=True):
        print(f"  {label:<8} {' '.join(f'{v:>4}' for v in row)}")
    return 0
