"""``mixsup experiment --folds K``: grouped cross-validation, so that every labelled slide is a
test slide once and the paired intervals rest on all of them.

The labelled slides are split by scikit-learn's ``StratifiedGroupKFold``: grouped by the
``patient`` column where there is one (a patient's slides stay in one fold), stratified by
label and by whether the slide has pixel labels, so that every fold's training slides keep
about the same share of annotated slides. Fold f tests on fold f, validates on fold f + 1 and
trains on the rest (plus any unlabelled slides); each fold is a dataset folder of its own
whose ``slides.csv`` points at the original files. The folds' test predictions are then
pooled per variant and seed, and the tables are made from the pooled predictions.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from mixsup.errors import MixsupError
from mixsup.evaluate.metrics import SlideMetrics, slide_metrics
from mixsup.evaluate.report import read_predictions
from mixsup.experiment.runs import slug
from mixsup.labels.table import Dataset, SlideRecord, load_dataset, write_slides_csv
from mixsup.storage.atomic import atomic_open, write_json
from mixsup.storage.user_files import parse_json, read_text


def fold_assignment(records: Sequence[SlideRecord], k: int, seed: int = 0) -> dict[str, int]:
    """Labelled slide id -> its fold (0..k-1); unlabelled slides are in none. The split is
    redrawn (random states seed, seed + 1, ...) until every fold holds both labels and every
    fold's training folds hold a pixel-labelled slide, as a greedy split may leave one
    without; refused when none of 100 draws does."""
    from sklearn.model_selection import StratifiedGroupKFold

    labelled = [r for r in records if r.label in (0, 1)]
    strata = np.array([2 * int(r.label or 0) + (r.annotation is not None) for r in labelled])
    groups = np.array([r.patient or r.slide_id for r in labelled])
    if k < 3 or len(set(groups.tolist())) < k:
        raise ValueError(f"{k} folds (at least 3: test, val and train) need at least {k} "
                         f"labelled patients or slides (found {len(set(groups.tolist()))})")
    for label in (0, 1):
        n = len({g for g, r in zip(groups, labelled, strict=True) if r.label == label})
        if n < k:
            raise ValueError(f"{k} folds need at least {k} patients or slides of label "
                             f"{label} (found {n}), so that every fold tests both classes")
    for state in range(seed, seed + 100):
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=state)
        folds: dict[str, int] = {}
        for f, (_, test) in enumerate(cv.split(np.zeros(len(labelled)), strata, groups)):
            folds.update({labelled[i].slide_id: f for i in test})
        if _usable(folds, labelled, k):
            return folds
    raise ValueError(f"no split into {k} folds gives every fold both labels and every "
                     "fold's training slides a pixel-labelled slide")


def _usable(folds: dict[str, int], labelled: list[SlideRecord], k: int) -> bool:
    labels = [{r.label for r in labelled if folds[r.slide_id] == f} for f in range(k)]
    annotated = [sum(r.annotation is not None for r in labelled if folds[r.slide_id] == f)
                 for f in range(k)]
    needs_pixels = sum(annotated) > 0
    return all(ls == {0, 1} for ls in labels) and (not needs_pixels or all(
        sum(annotated[g] for g in range(k) if fold_split(f, g, k) == "train") > 0
        for f in range(k)))


def fold_split(fold: int, of_slide: int | None, k: int) -> str:
    """The split a slide in fold ``of_slide`` (None: unlabelled) takes in fold ``fold``."""
    if of_slide == fold:
        return "test"
    if of_slide == (fold + 1) % k:
        return "val"
    return "train"


def write_folds(data: Dataset, out: Path, k: int, seed: int = 0) -> list[Path]:
    """One dataset folder per fold under ``out`` (``fold<f>/slides.csv`` and a link to the
    annotations), and ``folds.json``, the assignment: a later run into the same folder must
    make the same one, else its finished runs would test on slides they trained on."""
    try:
        folds = fold_assignment(data.slides, k, seed)
    except ValueError as exc:
        raise MixsupError(str(exc), "use fewer --folds, or add labelled slides",
                          data.root / "slides.csv") from exc
    record = out / "folds.json"
    plan = {"folds": k, "seed": seed, "data": str(data.root.absolute()), "assignment": folds}
    if record.is_file():
        before = parse_json(read_text(record, "folds.json"), record, "folds.json")
        if before != plan:
            raise MixsupError("this experiment folder was cross-validated with other folds or "
                              "slides; its runs would test on slides they trained on",
                              "use a new --out (or the same --folds on the same dataset)",
                              record)
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(record, plan)
    dirs = []
    annotations = (data.root / "annotations").absolute()
    for f in range(k):
        d = out / f"fold{f}"
        d.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, object]] = [
            {"slide_id": r.slide_id, "path": str(r.path.absolute()),
             "label": "" if r.label is None else r.label,
             "split": fold_split(f, folds.get(r.slide_id), k), "center": r.center,
             "patient": r.patient, "node_class": r.node_class} for r in data.slides]
        write_slides_csv(d / "slides.csv", rows)
        link = d / "annotations"
        if annotations.is_dir() and not link.exists():
            os.symlink(annotations, link, target_is_directory=True)
        dirs.append(d)
    return dirs


def pool_predictions(preds: Sequence[Path], out: Path) -> Path:
    """The folds' prediction folders of one run setting merged into ``out``: its
    ``predictions.csv`` and ``topk.csv`` (every slide once, as each fold scored it)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("predictions.csv", "topk.csv"):
        header: list[str] | None = None
        rows: list[dict[str, str]] = []
        for pred in preds:
            with open(pred / name, newline="") as fh:
                reader = csv.DictReader(fh)
                header = header or list(reader.fieldnames or [])
                rows += list(reader)
        with atomic_open(out / name) as fh:
            w = csv.DictWriter(fh, fieldnames=header or [], lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    return out


def pooled_metrics(pred: Path, labels: dict[str, int]) -> SlideMetrics:
    """Metrics over the pooled test slides: AUC and specificity at 100% sensitivity from the
    pooled scores; sensitivity and specificity from each fold's own calls (its bundle's
    operating threshold), which a single threshold cannot give."""
    scores = read_predictions(pred / "predictions.csv")
    calls = _calls(pred / "predictions.csv")
    ids = [i for i in scores if i in labels]
    y = np.array([labels[i] for i in ids])
    called = np.array([calls[i] for i in ids], bool)
    m = slide_metrics(np.array([scores[i] for i in ids]), y, 0.5)
    pos, neg = y == 1, y == 0
    return replace(m, sensitivity=float(called[pos].mean()),
                   specificity=float((~called[neg]).mean()), operating_threshold=float("nan"),
                   tp=int((called & pos).sum()), fp=int((called & neg).sum()),
                   tn=int((~called & neg).sum()), fn=int((~called & pos).sum()))


def _calls(path: Path) -> dict[str, bool]:
    with open(path, newline="") as fh:
        return {r["slide_id"]: r.get("prediction") == "1" for r in csv.DictReader(fh)}


def run_folds(data_dir: Path, out: Path, k: int, seed: int,
              run_fold: Callable[[Path, Path], dict[str, dict[int, Path]]]
              ) -> dict[str, dict[int, Path]]:
    """``run_fold(fold_data, fold_out)`` runs one fold's experiment and returns its test
    prediction folders by variant and seed; the pooled prediction folders come back the same
    way (``out/cv/pred/<variant>_seed<s>``)."""
    per_fold = [run_fold(d, out / "folds" / d.name)
                for d in write_folds(load_dataset(data_dir), out / "fold-data", k, seed)]
    pooled: dict[str, dict[int, Path]] = {}
    for name in per_fold[0]:
        for s in per_fold[0][name]:
            target = out / "cv" / "pred" / f"{slug(name)}_seed{s}"
            pooled.setdefault(name, {})[s] = pool_predictions(
                [fold[name][s] for fold in per_fold], target)
    return pooled
