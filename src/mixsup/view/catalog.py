"""What the viewer shows: the slides of one ``mixsup predict`` folder, with labels if known.

Every file the server may open is fixed here, at start-up, from the folder's own records;
requests only ever pick a slide id out of this table.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixsup.errors import MixsupError
from mixsup.evaluate.report import Evaluation, evaluation, read_predictions
from mixsup.labels.table import SlideRecord
from mixsup.methods.bundle_meta import read_bundle_meta
from mixsup.storage.user_files import CONTROL_CHARS, finite, parse_json, read_text

log = logging.getLogger(__name__)
# Ids become file names under the folder: anything that could step out of it is refused.
SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")


@dataclass(frozen=True)
class SlideEntry:
    slide_id: str
    slide_path: Path  # the slide file, from slides/<id>.json
    probmap: Path  # probmaps/<id>.zarr
    regions: Path  # regions/<id>.geojson
    probability: float
    prediction: int  # the call at the folder's operating threshold
    n_patches: int
    topk: tuple[dict[str, Any], ...]
    label: int | None = None
    center: str | None = None
    annotation: Path | None = None  # the dataset's pixel labels, with --data
    missing: bool = False  # the slide file was not there at start-up: listed, not shown

    @property
    def outcome(self) -> str | None:
        """TP, FP, TN or FN where the label is known."""
        if self.label is None:
            return None
        return ("T" if self.prediction == self.label else "F") + ("P" if self.prediction else "N")

    def summary(self) -> dict[str, Any]:
        best = max((t["max_pixel_prob"] for t in self.topk), default=None)
        return {"slide_id": self.slide_id, "probability": self.probability,
                "prediction": self.prediction, "label": self.label, "center": self.center,
                "outcome": self.outcome, "n_patches": self.n_patches, "top_pixel_prob": best,
                "missing": self.missing}


@dataclass(frozen=True)
class Catalog:
    pred: Path
    threshold: float
    mode: str | None  # the bundle's training mode, where its bundle.json is still readable
    slides: tuple[SlideEntry, ...]
    metrics: Evaluation | None  # over the labelled slides, overall and per center
    n_unlabelled: int = 0

    def metrics_json(self) -> dict[str, Any] | None:
        if self.metrics is None:
            return None
        return self.metrics.to_json() | {"n_unlabelled": self.n_unlabelled}

    def get(self, slide_id: str) -> SlideEntry | None:
        return next((s for s in self.slides if s.slide_id == slide_id), None)


def load_catalog(pred: str | Path, data: str | Path | None = None) -> Catalog:
    pred = Path(pred)
    meta_path = pred / "predict.json"
    if not meta_path.is_file():
        raise MixsupError("not a finished prediction folder (no predict.json)",
                          "pass the --out folder of a `mixsup predict` run that ran to the end",
                          pred)
    meta = _json_object(meta_path, "predict.json")
    odd = [k for k, v in meta.items() if isinstance(v, str) and CONTROL_CHARS.search(v)]
    if odd:
        raise MixsupError(f"predict.json's {odd[0]!r} holds a control character (a NUL?)",
                          _RECORD_FIX, meta_path)
    threshold = finite(meta.get("operating_threshold"), "operating_threshold", meta_path,
                       low=0.0, high=1.0)
    scores = read_predictions(pred / "predictions.csv")
    records = _records(data)
    slides = []
    for slide_id, prob in scores.items():
        if not SAFE_ID.fullmatch(slide_id):
            log.warning("%s: slide id %r is not a plain file name; left out", pred, slide_id)
            continue
        rec_path = pred / "slides" / f"{slide_id}.json"
        if not rec_path.is_file():
            raise MixsupError(f"slide {slide_id} is in predictions.csv but has no record",
                              "re-run `mixsup predict` into this folder", rec_path)
        rec = _slide_record(rec_path)
        row = records.get(slide_id)
        slide_path = row.path if row else Path(rec["path"])
        slides.append(SlideEntry(
            slide_id=slide_id, slide_path=slide_path,
            probmap=pred / "probmaps" / f"{slide_id}.zarr",
            regions=pred / "regions" / f"{slide_id}.geojson",
            probability=prob, prediction=int(prob >= threshold),
            n_patches=rec["n_patches"], topk=rec["topk"],
            label=row.label if row else None, center=row.center if row else None,
            annotation=row.annotation if row else None, missing=not slide_path.is_file()))
    if not slides:
        raise MixsupError("the prediction folder holds no slide", "predict some slides first",
                          pred)
    _check_slide_files(pred, slides, data is not None)
    # highest probability first; slides without a finite one last
    slides.sort(key=lambda s: -s.probability if math.isfinite(s.probability) else math.inf)
    undefined = [s.slide_id for s in slides if not math.isfinite(s.probability)]
    if undefined:
        log.warning("%s: slide(s) %s have no finite probability; left out of the metrics",
                    pred, ", ".join(undefined[:5]))
    known = [s for s in slides if s.label is not None and math.isfinite(s.probability)]
    mode, bundle = meta.get("mode"), meta.get("bundle")
    return Catalog(pred=pred, threshold=threshold,
                   mode=(mode if isinstance(mode, str) else None)
                   or _mode(bundle if isinstance(bundle, str) else None), slides=tuple(slides),
                   metrics=evaluation(np.array([s.probability for s in known]),
                                      np.array([s.label for s in known]),
                                      [s.center or "" for s in known], threshold)
                   if known else None,
                   n_unlabelled=len(slides) - len(known))


def _check_slide_files(pred: Path, slides: list[SlideEntry], with_data: bool) -> None:
    """A slide file that is not there is listed as missing, with a warning; none there at all
    is an error (most likely paths relative to where `mixsup predict` ran)."""
    missing = [s for s in slides if s.missing]
    if not missing:
        return
    why, fix = (("moved or deleted since the prediction?",
                 "put the slide files back where the dataset's slides.csv says") if with_data
                else ("a path relative to where `mixsup predict` ran?",
                      "run `mixsup view` from that folder, or pass --data DATA to take the "
                      "paths from the dataset's slides.csv"))
    if len(missing) == len(slides):
        first = missing[0]
        raise MixsupError(f"none of the {len(slides)} slide files is there: slide "
                          f"{first.slide_id}'s is {first.slide_path} ({why})", fix,
                          pred / "slides" / f"{first.slide_id}.json")
    shown = ", ".join(f"{s.slide_id} ({s.slide_path})" for s in missing[:20])
    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    log.warning("%s: %d slide file(s) not there (%s), listed as missing and not shown: %s%s. "
                "Fix: %s", pred, len(missing), why, shown, more, fix)


_RECORD_FIX = "re-run `mixsup predict` into this folder (its own files were edited or cut short)"
TOPK_NUMBERS = ("x", "y", "size", "max_pixel_prob")


def _json_object(path: Path, what: str) -> dict[str, Any]:
    doc = parse_json(read_text(path, what), path, what)
    if not isinstance(doc, dict):
        raise MixsupError(f"{what} is not a JSON object", _RECORD_FIX, path)
    return doc


def _slide_record(path: Path) -> dict[str, Any]:
    """The fields of ``slides/<id>.json`` that the viewer uses, checked: the slide's path, its
    patch count and its top-K rows (numbers the page shows and flies to)."""
    rec = _json_object(path, "slide record")
    slide = rec.get("path")
    n_patches = rec.get("n_patches", 0)
    topk = rec.get("topk", [])
    if not isinstance(slide, str) or not slide or "\x00" in slide:
        raise MixsupError("the slide record has no slide path", _RECORD_FIX, path)
    if not isinstance(n_patches, int) or isinstance(n_patches, bool) or n_patches < 0:
        raise MixsupError(f"n_patches is {str(n_patches)[:40]!r}, not a count", _RECORD_FIX,
                          path)
    if not isinstance(topk, list):
        raise MixsupError("topk is not a list", _RECORD_FIX, path)
    rows = []
    for i, t in enumerate(topk, start=1):
        if not isinstance(t, dict):
            raise MixsupError(f"top-K row {i} is not an object", _RECORD_FIX, path)
        row: dict[str, Any] = {k: finite(t.get(k), f"top-K row {i}'s {k}", path)
                               for k in TOPK_NUMBERS}
        if not 0 <= row["max_pixel_prob"] <= 1:
            raise MixsupError(f"top-K row {i}'s max_pixel_prob is not a probability",
                              _RECORD_FIX, path)
        patch = t.get("patch_prob")
        row["patch_prob"] = None if patch is None else finite(
            patch, f"top-K row {i}'s patch_prob", path, low=0.0, high=1.0)
        row["rank"] = i
        rows.append(row)
    return {"path": slide, "n_patches": n_patches, "topk": tuple(rows)}


def _records(data: str | Path | None) -> dict[str, SlideRecord]:
    """The dataset's slides by id (label, center, slide file, annotation file)."""
    if data is None:
        return {}
    from mixsup.labels.table import load_dataset

    return {r.slide_id: r for r in load_dataset(data, require_files=False).slides}


def _mode(bundle: str | None) -> str | None:
    """The bundle's mode for prediction folders whose predict.json does not name it, read
    through the torch-free record rather than mixsup.methods.bundle, which imports torch (about
    700 MB more for the server to hold)."""
    for meta in ((Path(bundle) / "bundle" / "bundle.json", Path(bundle) / "bundle.json")
                 if bundle else ()):
        try:
            return read_bundle_meta(meta).mode
        except MixsupError:
            continue
    return None
