"""``mixsup stage train|predict``: θ1 heatmaps -> features -> node classes -> pN stages."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from mixsup.artefacts import load_sklearn, save_sklearn
from mixsup.atomic import atomic_open, write_json
from mixsup.camelyon.classifier import NodeForest, train_node_forest
from mixsup.camelyon.features import Heatmap, heatmap_features, rule_node_class
from mixsup.camelyon.staging import pn_stage, write_stage_csv
from mixsup.errors import MixsupError
from mixsup.heatmap import stitch
from mixsup.labels.table import SlideRecord, load_dataset
from mixsup.mapstore import open_maps
from mixsup.predict import bundle_config, predict
from mixsup.slides.reader import Slide

log = logging.getLogger(__name__)
_NODE_ID = re.compile(r"^(patient_\d+)_node_(\d+)$")
FOREST_FORMAT = "mixsup-node-forest-v1"
FOREST_FILE, OLD_FOREST_FILE = "node_forest.skops", "node_forest.joblib"


def slide_features(run: Path, records: list[SlideRecord], work: Path, heatmap_um: float,
                   progress: bool) -> list[dict[str, float]]:
    """θ1 over every slide (the prediction path, resumable), then heatmap features."""
    cfg = bundle_config(run)
    predict(run, [(r.slide_id, r.path) for r in records], work, cfg, progress=progress)
    rows = []
    for rec in records:
        got = open_maps(work / "maps" / f"{rec.slide_id}.zarr")
        if got is None:
            raise MixsupError(f"no probability maps for {rec.slide_id}",
                              "check the prediction log; the slide may be unreadable", work)
        with Slide(rec.path, cfg.reader.backend, cfg.reader.mpp) as slide:
            ds = heatmap_um / slide.mpp
            prob, count = stitch(got.coords, got.maps, float(got.attrs["size0"]),
                                 slide.dimensions, ds)
            rows.append(heatmap_features(Heatmap(prob, count > 0, ds * slide.mpp)))
    return rows


def _patient_nodes(records: list[SlideRecord]) -> list[tuple[str, int]]:
    """(patient, node index) per slide: from ``patient_XXX_node_Y`` ids, else the patient
    column with nodes numbered in table order."""
    out, counter = [], {}
    for rec in records:
        m = _NODE_ID.match(rec.slide_id)
        patient = rec.patient or (m.group(1) if m else None)
        if patient is None:
            raise MixsupError(f"slide {rec.slide_id!r} names no patient",
                              "add a patient column or name slides patient_XXX_node_Y")
        node = int(m.group(2)) if m else counter.get(patient, 0)
        counter[patient] = counter.get(patient, 0) + 1
        out.append((patient, node))
    return out


def stage_train(run: str | Path, data: str | Path, split: str = "train",
                heatmap_um: float = 16.0, folds: int = 5, seed: int = 0,
                progress: bool = True) -> dict[str, Any]:
    run = Path(run)
    records = [r for r in load_dataset(data).split(split) if r.node_class]
    if len(records) < 4:
        raise MixsupError(f"only {len(records)} {split} slide(s) carry a node_class",
                          "add node_class (negative, itc, micro, macro) to slides.csv", data)
    rows = slide_features(run, records, run / "stage" / f"heatmaps_{split}", heatmap_um,
                          progress)
    classes = [r.node_class.lower() for r in records]
    forest = train_node_forest(rows, classes, folds=folds, seed=seed)
    save_node_forest(run, forest, heatmap_um)
    rules = [rule_node_class(f) for f in rows]
    report = {
        "slides": len(records),
        "heatmap_um": heatmap_um,
        "cv_accuracy": float(np.mean([a == b for a, b in zip(forest.cv_predictions, classes,
                                                            strict=True)])),
        "rule_accuracy": float(np.mean([a == b for a, b in zip(rules, classes, strict=True)])),
    }
    _write_features(run / "stage" / f"features_{split}.csv", records, rows)
    write_json(run / "stage" / "train.json", report)
    return report


def stage_predict(run: str | Path, data: str | Path, out: str | Path, split: str = "test",
                  progress: bool = True) -> dict[str, Any]:
    run, out = Path(run), Path(out)
    forest, heatmap_um = load_node_forest(run)
    records = load_dataset(data).split(split)
    rows = slide_features(run, records, out / "heatmaps", heatmap_um, progress)
    nodes_rf = forest.predict(rows)
    nodes_rule = [rule_node_class(f) for f in rows]
    outputs = {}
    for name, preds in (("forest", nodes_rf), ("rule", nodes_rule)):
        per_patient: dict[str, dict[int, str]] = {}
        for (p, n), c in zip(_patient_nodes(records), preds, strict=True):
            per_patient.setdefault(p, {})[n] = c
        stages = {p: pn_stage(n.values()) for p, n in per_patient.items()}
        suffix = "" if name == "forest" else "_rule"
        write_stage_csv(out / f"submission{suffix}.csv", per_patient, stages)
        outputs[name] = stages
    _write_features(out / "features.csv", records, rows, nodes_rf, nodes_rule)
    summary = {"slides": len(records), "patients": len(outputs["forest"])}
    write_json(out / "predict.json", summary)
    return summary


def save_node_forest(run: str | Path, forest: NodeForest, heatmap_um: float) -> None:
    save_sklearn(Path(run) / "stage" / FOREST_FILE,
                 {"format": FOREST_FORMAT, "heatmap_um": float(heatmap_um),
                  "feature_names": list(forest.feature_names), "models": list(forest.models),
                  "cv_predictions": list(forest.cv_predictions)})


def load_node_forest(run: str | Path) -> tuple[NodeForest, float]:
    """The forest ``stage train`` wrote, and its heatmap resolution; never a pickle."""
    stage = Path(run) / "stage"
    path = stage / FOREST_FILE
    if not path.is_file() and (stage / OLD_FOREST_FILE).is_file():
        old = stage / OLD_FOREST_FILE
        raise MixsupError(
            "refused to load a joblib node classifier (a pickle: loading it can run code)",
            f"retrain it with `mixsup stage train {run} --data DATA` (the heatmaps are reused), "
            "or, only where you trust the file, convert it in a trusted environment: python -c "
            "\"import joblib; from mixsup.camelyon.workflow import save_node_forest; "
            f"d = joblib.load('{old}'); save_node_forest('{run}', d['forest'], "
            "d['heatmap_um'])\"", old)
    if not path.is_file():
        raise MixsupError("no node classifier in this run",
                          "run `mixsup stage train RUN --data DATA` first", run)
    saved = load_sklearn(path, f"rerun `mixsup stage train {run} --data DATA`")
    if (not isinstance(saved, dict) or saved.get("format") != FOREST_FORMAT
            or not all(isinstance(m, RandomForestClassifier) for m in saved["models"])):
        raise MixsupError("not a mixsup node classifier", "rerun `mixsup stage train`", path)
    forest = NodeForest([str(n) for n in saved["feature_names"]], list(saved["models"]),
                        [str(c) for c in saved["cv_predictions"]])
    return forest, float(saved["heatmap_um"])


def _write_features(path: Path, records: list[SlideRecord], rows: list[dict[str, float]],
                    *predictions: list[str]) -> None:
    names = sorted(rows[0]) if rows else []
    extra = ["node_class_forest", "node_class_rule"][: len(predictions)]
    with atomic_open(path) as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["slide_id", "node_class", *extra, *names])
        for i, (rec, f) in enumerate(zip(records, rows, strict=True)):
            w.writerow([rec.slide_id, rec.node_class or "", *[p[i] for p in predictions],
                        *[f"{f[n]:.6g}" for n in names]])
