"""The dataset directory: ``slides.csv`` plus ``annotations/<slide_id>.<ext>`` (outlines:
geojson, json, xml; label masks: png, tif, tiff).

Loading validates everything once and reports every problem in one message.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mixsup.errors import DatasetError
from mixsup.storage.atomic import atomic_open
from mixsup.storage.user_files import CONTROL_CHARS, read_csv

REQUIRED = ("slide_id", "path", "label", "split")
OPTIONAL = ("center", "patient", "node_class", "tissue")
SPLITS = ("train", "val", "test")
NODE_CLASSES = ("negative", "itc", "micro", "macro")  # Camelyon17's lymph-node classes
ANNOTATION_SUFFIXES = (".geojson", ".json", ".xml", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class SlideRecord:
    slide_id: str
    path: Path  # absolute
    label: int | None  # 1 positive, 0 negative, None unlabelled
    split: str
    annotation: Path | None = None
    center: str | None = None
    patient: str | None = None
    node_class: str | None = None
    tissue: Path | None = None  # tissue outlines (GeoJSON) for tissue.source=geojson, absolute


@dataclass(frozen=True)
class Dataset:
    root: Path
    slides: tuple[SlideRecord, ...]

    def __len__(self) -> int:
        return len(self.slides)

    def split(self, name: str) -> list[SlideRecord]:
        return [s for s in self.slides if s.split == name]

    def by_id(self, slide_id: str) -> SlideRecord:
        for s in self.slides:
            if s.slide_id == slide_id:
                return s
        raise KeyError(slide_id)

    def summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for s in self.slides:
            row = out.setdefault(s.split, {"slides": 0, "positive": 0, "negative": 0,
                                           "unlabelled": 0, "annotated": 0})
            row["slides"] += 1
            row[{1: "positive", 0: "negative", None: "unlabelled"}[s.label]] += 1
            row["annotated"] += s.annotation is not None
        return out


def load_dataset(root: str | Path, require_files: bool = True) -> Dataset:
    """The dataset in ``root``; every problem of ``slides.csv`` and ``annotations/`` in one
    error. ``require_files=False`` lets a slide file be missing (the viewer lists it)."""
    root = Path(root)
    table = root / "slides.csv"
    if not table.is_file():
        raise DatasetError("no slides.csv in the dataset directory",
                           "create slides.csv with columns slide_id,path,label,split "
                           "(see the README), or run `mixsup synth`", root)
    rows = _read_rows(table)
    problems: list[str] = []
    ids = Counter(r["slide_id"] for r in rows)
    for sid, n in ids.items():
        if n > 1:
            problems.append(f"slide_id {sid!r} appears {n} times")
    annotations, twins = _annotation_files(root / "annotations")
    for sid, names in twins.items():
        problems.append(f"slide {sid!r} has {len(names)} annotation files ({', '.join(names)}); "
                        "keep one")
    records = []
    for line, r in enumerate(rows, start=2):
        where = f"line {line} ({r['slide_id'] or 'no id'})"
        if not r["slide_id"]:
            problems.append(f"{where}: empty slide_id")
            continue
        if "/" in r["slide_id"] or "\\" in r["slide_id"]:
            problems.append(f"{where}: slide_id must not contain path separators")
        if CONTROL_CHARS.search(r["slide_id"]) or r["slide_id"] in (".", ".."):
            problems.append(f"{where}: slide_id {r['slide_id']!r} holds control characters "
                            "or names a folder; it becomes a file name")
        if r.get("node_class") and r["node_class"].lower() not in NODE_CLASSES:
            problems.append(f"{where}: node_class {r['node_class']!r} is not one of "
                            f"{', '.join(NODE_CLASSES)} (or empty)")
        try:
            label = parse_label(r["label"])
        except ValueError:
            label = None  # a problem: the load fails below, listing it
            problems.append(f"{where}: label {r['label']!r} is not 1, 0 or empty")
        if r["split"] not in SPLITS:
            problems.append(f"{where}: split {r['split']!r} is not one of {', '.join(SPLITS)}")
        path = _resolve(root, r["path"])
        if path is None:
            problems.append(f"{where}: path {r['path']!r} escapes the dataset directory")
        elif require_files and not path.is_file():
            problems.append(f"{where}: slide file {r['path']!r} does not exist")
        tissue = _resolve(root, r["tissue"]) if r.get("tissue") else None
        if r.get("tissue") and tissue is None:
            problems.append(f"{where}: tissue {r['tissue']!r} escapes the dataset directory")
        records.append(SlideRecord(
            slide_id=r["slide_id"],
            path=path if path is not None else root,
            label=label,
            split=r["split"],
            annotation=annotations.pop(r["slide_id"], None),
            center=r.get("center") or None,
            patient=r.get("patient") or None,
            node_class=r.get("node_class") or None,
            tissue=tissue,
        ))
    for sid, path in annotations.items():
        problems.append(f"annotation {path.name} names slide {sid!r}, which is not in slides.csv")
    if problems:
        raise DatasetError(
            f"{len(problems)} problem(s):\n  - " + "\n  - ".join(problems),
            "correct slides.csv or the annotations folder and run again", table)
    return Dataset(root=root, slides=tuple(records))


def _read_rows(table: Path) -> list[dict[str, str]]:
    """slides.csv's rows, keys and values stripped; refuses unreadable, ragged or incomplete
    tables, repeated columns and a table without slides."""
    rows = read_csv(table, "slides.csv", REQUIRED, DatasetError)
    if not rows:
        raise DatasetError("slides.csv lists no slide (only its header)",
                           "add one row per slide: slide_id,path,label,split", table)
    return rows


def parse_label(raw: str) -> int | None:
    """A slide's label cell: 1 positive, 0 negative (also written 1.0, 0.0), None for an empty
    cell (an unlabelled slide); raises ``ValueError`` for anything else."""
    if raw == "":
        return None
    if raw in ("0", "1", "0.0", "1.0"):
        return int(float(raw))
    raise ValueError(f"label {raw!r} is not 1, 0 or empty")


def _resolve(root: Path, raw: str) -> Path | None:
    """The slide's absolute path, or None when a relative path leaves the dataset folder."""
    if not raw:
        return root / "<empty path>"
    p = Path(raw)
    if p.is_absolute():
        return p
    joined = Path(os.path.normpath(root.absolute() / p))
    try:
        joined.relative_to(root.absolute())
    except ValueError:
        return None
    return joined


def _annotation_files(folder: Path) -> tuple[dict[str, Path], dict[str, list[str]]]:
    """(slide id -> its annotation file, slide id -> file names where it has several)."""
    by_id: dict[str, list[Path]] = {}
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() in ANNOTATION_SUFFIXES and not f.name.startswith("."):
                by_id.setdefault(f.stem, []).append(f)
    return ({sid: files[0] for sid, files in by_id.items()},
            {sid: [f.name for f in files] for sid, files in by_id.items() if len(files) > 1})


def write_slides_csv(path: str | Path, records: list[dict[str, object]]) -> None:
    columns = list(REQUIRED) + [c for c in OPTIONAL if any(r.get(c) is not None for r in records)]
    with atomic_open(path, "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow({c: "" if r.get(c) is None else r.get(c) for c in columns})
