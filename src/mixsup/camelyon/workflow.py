"""``mixsup stage train|predict``: θ1 heatmaps -> features -> node classes -> pN stages."""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from mixsup.camelyon.classifier import NodeForest, train_node_forest
from mixsup.camelyon.features import Heatmap, heatmap_features, rule_node_class
from mixsup.errors import MixsupError
from mixsup.inference.map_store import open_maps
from mixsup.labels.stages import NODE_CLASSES, pn_stage, write_stage_csv
from mixsup.labels.table import Dataset, SlideRecord, load_dataset
from mixsup.methods.bundle import read_bundle
from mixsup.predict.engine import predict
from mixsup.render.heatmap import stitch
from mixsup.slides.reader import Slide
from mixsup.storage.artefacts import load_sklearn, save_sklearn
from mixsup.storage.atomic import atomic_open, write_json
from mixsup.storage.records import to_json

log = logging.getLogger(__name__)
_NODE_ID = re.compile(r"^(patient_\d+)_node_(\d+)$")
FOREST_FORMAT = "mixsup-node-forest-v1"
FOREST_FILE, OLD_FOREST_FILE = "node_forest.skops", "node_forest.joblib"


def slide_features(run: Path, records: list[SlideRecord], work: Path, heatmap_um: float,
                   progress: bool) -> list[dict[str, float]]:
    """θ1 over every slide (the prediction path, resumable), then heatmap features."""
    bundle = read_bundle(run)
    cfg = bundle.cfg
    predict(bundle, [(r.slide_id, r.path) for r in records], work, progress=progress,
            outlines={r.slide_id: r.tissue for r in records if r.tissue is not None})
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
    out: list[tuple[str, int]] = []
    counter: dict[str, int] = {}
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


FEATURE_SOURCES = ("auto", "heldout", "val", "train")
MIN_SLIDES = 4
_SOURCE_NAMES = {"heldout": "train slide(s) θ1 did not train on", "val": "val slide(s)",
                 "train": "train slide(s)"}


def feature_sets(run: Path, data: Dataset) -> dict[str, list[SlideRecord]]:
    """Slides with a node_class: the train split, split by whether the run's θ1 learnt from
    them (``heldout`` / ``in_sample``), and the val split. Bundles that do not list θ1's
    slides count every train slide as in-sample."""
    seen = read_bundle(run).meta.theta1_slides
    train = [r for r in data.split("train") if r.node_class]
    heldout = [r for r in train if seen is not None and r.slide_id not in seen]
    return {"train": train, "heldout": heldout,
            "in_sample": [r for r in train if r not in heldout],
            "val": [r for r in data.split("val") if r.node_class]}


def _choose_source(features_from: str, sets: dict[str, list[SlideRecord]], table: Path) -> str:
    if features_from != "auto":
        if len(sets[features_from]) < MIN_SLIDES:
            raise MixsupError(f"only {len(sets[features_from])} "
                              f"{_SOURCE_NAMES[features_from]} carry a node_class",
                              f"the forest needs {MIN_SLIDES}: add node_class (negative, itc, "
                              "micro, macro) to slides.csv or pick another --features-from",
                              table)
        return features_from
    for name in ("heldout", "val", "train"):
        if len(sets[name]) >= MIN_SLIDES:
            if name == "train":
                log.warning("no %d held-out or val slides with a node_class: the forest learns "
                            "from heatmaps of θ1's own training slides (optimistic)", MIN_SLIDES)
            return name
    return _choose_source("train", sets, table)  # raises, naming the train split


def _node_class(rec: SlideRecord, table: Path | None = None) -> str:
    """The slide's node_class as given (feature_sets keeps only slides that have one)."""
    if not rec.node_class:
        raise MixsupError(f"slide {rec.slide_id!r} has no node_class",
                          f"add one of {', '.join(NODE_CLASSES)} to slides.csv", table)
    return rec.node_class


def _check_node_classes(records: list[SlideRecord], table: Path) -> None:
    given = [_node_class(r, table) for r in records]
    bad = sorted({c for c in given if c.lower() not in NODE_CLASSES})
    if bad:
        raise MixsupError(f"unknown node_class value(s) {', '.join(bad)}",
                          f"use {', '.join(NODE_CLASSES)}", table)


@dataclass(frozen=True)
class ForestScores:
    slides: int
    cv_accuracy: float  # the forest's, cross-validated
    rule_accuracy: float  # the size rule's (no training), for comparison


@dataclass(frozen=True)
class HeldOutScores(ForestScores):
    set: str = ""  # which slides: heldout or val


@dataclass(frozen=True)
class StageTrainReport:
    """``stage/train.json``."""

    features_from: str
    heatmap_um: float
    slides: int
    cv_accuracy: float
    rule_accuracy: float
    in_sample: ForestScores | None  # on θ1's own training slides (optimistic)
    held_out: HeldOutScores | None


@dataclass(frozen=True)
class StagePrediction:
    slides: int
    patients: int


def _forest_scores(rows: list[dict[str, float]], records: list[SlideRecord], folds: int,
                   seed: int) -> tuple[NodeForest, ForestScores]:
    classes = [_node_class(r).lower() for r in records]
    forest = train_node_forest(rows, classes, folds=folds, seed=seed)
    rules = [rule_node_class(f) for f in rows]
    return forest, ForestScores(
        len(records),
        float(np.mean([a == b for a, b in zip(forest.cv_predictions, classes, strict=True)])),
        float(np.mean([a == b for a, b in zip(rules, classes, strict=True)])))


def stage_train(run: str | Path, data: str | Path, features_from: str = "auto",
                heatmap_um: float = 16.0, folds: int = 5, seed: int = 0,
                progress: bool = True) -> StageTrainReport:
    """Train the node forest on the heatmap features of ``features_from`` (``auto``: held-out
    train slides, else val, else train). Reports the cross-validated accuracy there and, for
    comparison, on θ1's own training slides (``in_sample``) and on held-out ones."""
    if features_from not in FEATURE_SOURCES:
        raise ValueError(f"features_from must be one of {FEATURE_SOURCES}")
    run, table = Path(run), Path(data) / "slides.csv"
    sets = feature_sets(run, load_dataset(data))  # checks come before anything is written
    source = _choose_source(features_from, sets, table)
    held = source if source != "train" else next(
        (n for n in ("heldout", "val") if len(sets[n]) >= MIN_SLIDES), None)
    in_sample = len(sets["in_sample"]) >= MIN_SLIDES
    needed = {r.slide_id: r for name in (source, held, "in_sample" if in_sample else None)
              if name for r in sets[name]}
    _check_node_classes(list(needed.values()), table)
    rows: dict[str, dict[str, float]] = {}
    for split in ("train", "val"):  # one heatmap folder per split, as before (reused)
        records = [r for r in needed.values() if r.split == split]
        if records:
            rows.update(zip([r.slide_id for r in records], slide_features(
                run, records, run / "stage" / f"heatmaps_{split}", heatmap_um, progress),
                strict=True))

    def scores(name: str) -> tuple[NodeForest, ForestScores]:
        return _forest_scores([rows[r.slide_id] for r in sets[name]], sets[name], folds, seed)

    forest, main = scores(source)
    held_scores = None if held is None else main if held == source else scores(held)[1]
    report = StageTrainReport(
        source, heatmap_um, main.slides, main.cv_accuracy, main.rule_accuracy,
        scores("in_sample")[1] if in_sample else None,
        None if held_scores is None else HeldOutScores(**asdict(held_scores), set=str(held)))
    save_node_forest(run, forest, heatmap_um)
    _write_features(run / "stage" / f"features_{source}.csv", sets[source],
                    [rows[r.slide_id] for r in sets[source]])
    write_json(run / "stage" / "train.json", to_json(report))
    return report


def stage_predict(run: str | Path, data: str | Path, out: str | Path, split: str = "test",
                  progress: bool = True) -> StagePrediction:
    run, out = Path(run), Path(out)
    forest, heatmap_um = load_node_forest(run)
    records = load_dataset(data).split(split)
    if not records:
        raise MixsupError(f"no {split} slide in the dataset", "pick another --split",
                          Path(data) / "slides.csv")
    nodes = _patient_nodes(records)  # before any output exists
    rows = slide_features(run, records, out / "heatmaps", heatmap_um, progress)
    nodes_rf = forest.predict(rows)
    nodes_rule = [rule_node_class(f) for f in rows]
    outputs = {}
    for name, preds in (("forest", nodes_rf), ("rule", nodes_rule)):
        per_patient: dict[str, dict[int, str]] = {}
        for (p, n), c in zip(nodes, preds, strict=True):
            per_patient.setdefault(p, {})[n] = c
        stages = {p: pn_stage(n.values()) for p, n in per_patient.items()}
        suffix = "" if name == "forest" else "_rule"
        write_stage_csv(out / f"submission{suffix}.csv", per_patient, stages)
        outputs[name] = stages
    _write_features(out / "features.csv", records, rows, nodes_rf, nodes_rule)
    summary = StagePrediction(len(records), len(outputs["forest"]))
    write_json(out / "predict.json", to_json(summary))
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
