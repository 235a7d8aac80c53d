"""``mixsup evaluate``: metrics.json, roc.png and report.md from predictions and labels."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixsup.atomic import write_json, write_text
from mixsup.errors import MixsupError
from mixsup.evaluate.metrics import (
    REPORTED,
    SlideMetrics,
    full_sensitivity_point,
    roc_points,
    slide_metrics,
)
from mixsup.records import to_json

log = logging.getLogger(__name__)


def read_predictions(path: Path) -> dict[str, float]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise MixsupError(f"cannot read predictions ({exc.strerror})", "check the path",
                          path) from exc
    if not rows or not {"slide_id", "probability"} <= set(rows[0]):
        raise MixsupError("not a predictions file (needs slide_id, probability)",
                          "pass the predictions.csv written by `mixsup predict`", path)
    out = {}
    for line, r in enumerate(rows, start=2):
        try:
            out[r["slide_id"]] = float(r["probability"])
        except (TypeError, ValueError):
            raise MixsupError(f"line {line}: probability {r['probability']!r} is not a number",
                              "pass the predictions.csv written by `mixsup predict`",
                              path) from None
    return out


def read_labels(path: Path) -> tuple[dict[str, int], dict[str, str]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "slide_id" not in rows[0] or "label" not in rows[0]:
        raise MixsupError("labels need slide_id and label columns",
                          "pass the dataset's slides.csv", path)
    labels = {r["slide_id"]: int(float(r["label"])) for r in rows if r["label"] not in ("",)}
    centers = {r["slide_id"]: r.get("center") or "" for r in rows}
    return labels, centers


@dataclass(frozen=True)
class Evaluation:
    """``metrics.json``: the metrics over every labelled slide, and per center."""

    overall: SlideMetrics
    per_center: dict[str, SlideMetrics]

    def to_json(self) -> dict[str, Any]:
        out = to_json(self.overall)
        if self.per_center:
            out["per_center"] = {c: to_json(m) for c, m in self.per_center.items()}
        return out


def evaluation(scores: np.ndarray, labels: np.ndarray, centers: list[str],
               threshold: float) -> Evaluation:
    """The metrics over all slides and per center (slides without a center count only in
    the first)."""
    by_center = {}
    for c in sorted(set(centers) - {""}):
        sel = np.array([x == c for x in centers])
        by_center[c] = slide_metrics(scores[sel], labels[sel], threshold)
    return Evaluation(slide_metrics(scores, labels, threshold), by_center)


def evaluate(pred_csv: str | Path, labels_csv: str | Path, out: str | Path,
             threshold: float | None = None) -> Evaluation:
    pred_csv, out = Path(pred_csv), Path(out)
    scores = read_predictions(pred_csv)
    labels, centers = read_labels(Path(labels_csv))
    ids = [s for s in scores if s in labels]
    missing = [s for s in scores if s not in labels]
    if missing:
        log.warning("%d predicted slide(s) have no label and are left out: %s", len(missing),
                    ", ".join(missing[:5]))
    if not ids:
        raise MixsupError("no predicted slide has a label",
                          "check that the slide ids match slides.csv", pred_csv)
    undefined = [i for i in ids if not math.isfinite(scores[i])]
    if undefined:
        raise MixsupError(f"{len(undefined)} slide(s) have no finite probability "
                          f"({', '.join(undefined[:5])})",
                          "the model's output was not finite: check the run (a diverged "
                          "training?) and predict again", pred_csv)
    if threshold is None:
        meta = pred_csv.parent / "predict.json"
        threshold = (json.loads(meta.read_text())["operating_threshold"] if meta.is_file()
                     else 0.5)
    s = np.array([scores[i] for i in ids])
    y = np.array([labels[i] for i in ids])
    result = evaluation(s, y, [centers.get(i, "") for i in ids], threshold)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", result.to_json())
    roc_figure(out / "roc.png", {"model": (s, y)})
    _report(out, pred_csv, result, ids, s, y, threshold)
    return result


def roc_figure(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """ROC curves with each one's 100%-sensitivity point marked (the paper's Fig. 4)."""
    # Imported here: the viewer reads predictions and metrics through this module.
    from matplotlib.figure import Figure

    from mixsup.plotting import save_png

    fig = Figure(figsize=(4.6, 4.4))
    ax = fig.subplots()
    for name, (s, y) in curves.items():
        if len(set(y.tolist())) < 2:
            continue
        fpr, tpr = roc_points(s, y)
        thr, spec = full_sensitivity_point(s, y)
        line, = ax.plot(fpr, tpr, lw=1.8, label=f"{name}")
        ax.plot([1 - spec], [1.0], "o", color=line.get_color(), ms=7,
                label=f"{name}: spec {spec:.3f} @ sens 1 (t={thr:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="chance")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_png(fig, path, dpi=110)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) and not math.isnan(v) else str(v)


def _report(out: Path, pred_csv: Path, result: Evaluation, ids: list[str],
            s: np.ndarray, y: np.ndarray, threshold: float) -> None:
    lines = ["# mixsup evaluation", "", f"Predictions: `{pred_csv}`", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(getattr(result.overall, k))} |" for k in REPORTED]
    if result.per_center:
        lines += ["", "## Per center", "", "| center | n_pos | n_neg | AUC | spec @ sens 1 |",
                  "|---|---|---|---|---|"]
        for c, m in result.per_center.items():
            lines.append(f"| {c} | {m.n_pos} | {m.n_neg} | {_fmt(m.auc)} | "
                         f"{_fmt(m.specificity_at_full_sensitivity)} |")
    lines += ["", "![ROC](roc.png)", ""]
    fps = [(i, p) for i, p, lab in zip(ids, s, y, strict=True) if lab == 0 and p >= threshold]
    fps.sort(key=lambda t: -t[1])
    lines += [f"## False positives at the operating threshold ({len(fps)})", ""]
    heat_dir = pred_csv.parent / "heatmaps"
    for sid, p in fps:
        src = heat_dir / f"{sid}.png"
        lines.append(f"### {sid} (p = {p:.4f})")
        if src.is_file():
            (out / "heatmaps").mkdir(exist_ok=True)
            shutil.copyfile(src, out / "heatmaps" / src.name)
            lines.append(f"![{sid}](heatmaps/{src.name})")
        lines.append("")
    write_text(out / "report.md", "\n".join(lines) + "\n")
