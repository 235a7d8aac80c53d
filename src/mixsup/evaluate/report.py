"""``mixsup evaluate``: metrics.json, roc.png and report.md from predictions and labels."""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixsup.errors import MixsupError
from mixsup.evaluate.metrics import (
    REPORTED,
    SlideMetrics,
    full_sensitivity_point,
    roc_points,
    slide_metrics,
)
from mixsup.labels.table import parse_label
from mixsup.storage.atomic import write_json, write_text
from mixsup.storage.records import to_json
from mixsup.storage.user_files import (
    finite,
    output_dir,
    parse_json,
    parse_number,
    read_csv,
    read_text,
)

log = logging.getLogger(__name__)


def read_predictions(path: Path) -> dict[str, float]:
    """slide id -> probability. A probability must be a number in [0, 1]; an empty one, or
    NaN (what predict writes for a diverged model), is kept as NaN for the caller to report;
    a slide listed twice is refused."""
    rows = read_csv(path, "predictions file", ("slide_id", "probability"))
    out: dict[str, float] = {}
    for line, r in enumerate(rows, start=2):
        sid, raw = r["slide_id"], r["probability"]
        if not sid:
            raise MixsupError(f"line {line} has no slide_id",
                              "pass the predictions.csv written by `mixsup predict`", path)
        if sid in out:
            raise MixsupError(f"slide {sid!r} appears more than once (line {line})",
                              "keep one prediction per slide", path)
        if raw.lower() in ("nan", ""):
            out[sid] = math.nan
            continue
        try:
            out[sid] = parse_number(raw, f"line {line}: probability", path, low=0.0, high=1.0)
        except MixsupError as exc:
            raise MixsupError(exc.what, "pass the predictions.csv written by `mixsup predict` "
                              "(probabilities in [0, 1])", path) from None
    if not out:
        raise MixsupError("the predictions file lists no slide",
                          "pass the predictions.csv written by `mixsup predict`", path)
    return out


def read_labels(path: Path) -> tuple[dict[str, int], dict[str, str]]:
    """(slide id -> label 0 or 1, slide id -> center) from a slides.csv-like table; an empty
    label is an unlabelled slide."""
    rows = read_csv(path, "labels file", ("slide_id", "label"))
    labels: dict[str, int] = {}
    centers: dict[str, str] = {}
    for line, r in enumerate(rows, start=2):
        sid, raw = r["slide_id"], r["label"]
        if sid in centers:
            raise MixsupError(f"slide {sid!r} appears more than once (line {line})",
                              "keep one row per slide", path)
        centers[sid] = r.get("center") or ""
        try:
            label = parse_label(raw)
        except ValueError:
            raise MixsupError(f"line {line}: label {raw[:40]!r} is not 0, 1 or empty",
                              "write 1 for positive, 0 for negative slides", path) from None
        if label is not None:
            labels[sid] = label
    return labels, centers


def read_threshold(pred_csv: Path) -> float:
    """The operating threshold of the predictions' folder (its predict.json), else 0.5."""
    meta = pred_csv.parent / "predict.json"
    if not meta.is_file():
        return 0.5
    doc = parse_json(read_text(meta, "predict.json"), meta, "predict.json")
    value = doc.get("operating_threshold") if isinstance(doc, dict) else None
    return finite(value, "operating_threshold", meta, low=0.0, high=1.0)


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
    """Score predictions against slide labels: ``metrics.json``, ``roc.png`` and
    ``report.md`` in ``out``. Predicted slides without a label are left out (with a warning).

    Args:
        pred_csv: ``predictions.csv`` of a prediction folder.
        labels_csv: A ``slides.csv``-like table with ``slide_id`` and ``label`` (1, 0 or
            empty) and optionally ``center`` (then the metrics per center too).
        out: The folder to write the report to.
        threshold: The operating threshold in [0, 1]; default: the prediction folder's
            ``predict.json``, else 0.5.

    Returns:
        The metrics over every labelled slide, and per center.

    Example:
        >>> from mixsup import evaluate
        >>> result = evaluate("preds/predictions.csv", "data/slides.csv",
        ...                   "report")  # doctest: +SKIP
        >>> result.overall.auc  # doctest: +SKIP
        0.91
    """
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
    threshold = read_threshold(pred_csv) if threshold is None else finite(
        threshold, "the threshold", None, low=0.0, high=1.0)
    s = np.array([scores[i] for i in ids])
    y = np.array([labels[i] for i in ids])
    result = evaluation(s, y, [centers.get(i, "") for i in ids], threshold)
    output_dir(out)
    write_json(out / "metrics.json", _nan_to_null(result.to_json()))  # NaN is not JSON
    roc_figure(out / "roc.png", {"model": (s, y)})
    _report(out, pred_csv, result, ids, s, y, threshold)
    return result


def _nan_to_null(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def roc_figure(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """ROC curves with each one's 100%-sensitivity point marked (the paper's Fig. 4)."""
    # Imported here: the viewer reads predictions and metrics through this module.
    from matplotlib.figure import Figure

    from mixsup.render.plotting import save_png

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
