"""``mixsup validate``: everything training will read, checked before it runs.

slides.csv and the annotation folder are checked by ``load_dataset``; here every slide is
opened as tiling will open it (header, levels, MPP, and a few tiles decoded: the reader's
probe), and every annotation file is parsed against its slide's size and label. Every problem
is collected and reported in one error, as ``load_dataset`` does. ``fast`` skips opening
the slides (outlines are then checked without the slide's bounds, and masks, which need the
slide's size, are not read). With ``tissue.source=geojson`` every slide's tissue file is read
and checked against the slide; with the tissue QC on, the share of each slide's tissue it
removes is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mixsup.config import Config
from mixsup.dataset.tissue_geojson import given_tissue
from mixsup.errors import DatasetError, MixsupError
from mixsup.labels.annotations import read_annotations
from mixsup.labels.formats.mask import recognises
from mixsup.labels.raster import polygon_parts
from mixsup.labels.regions import SlideAnnotations
from mixsup.labels.table import Dataset, SlideRecord, load_dataset
from mixsup.slides import open_slide
from mixsup.slides.tiling import slide_tissue
from mixsup.slides.tissue_qc import describe_removed
from mixsup.storage.user_files import read_bytes


@dataclass(frozen=True)
class Validation:
    dataset: Dataset
    slides_opened: int
    annotations: tuple[str, ...]  # one line per annotation file: what training will read
    masks_unchecked: tuple[str, ...] = ()  # slide ids whose masks --fast could not read
    tissue: tuple[str, ...] = ()  # one line per slide: its tissue file, or what the QC removed


def validate_dataset(root: str | Path, cfg: Config, fast: bool = False) -> Validation:
    ds = load_dataset(root)
    problems: list[str] = []
    lines: list[str] = []
    unchecked: list[str] = []
    tissue: list[str] = []
    opened = 0
    for rec in ds.slides:
        dims, mpp = None, None
        if not fast:
            try:
                dims, mpp = _open(rec, cfg)
                opened += 1
            except MixsupError as exc:
                problems.append(f"{rec.slide_id}: {exc}")
                continue
        try:
            line = _tissue_line(rec, cfg, fast)
            tissue += [line] if line else []
        except MixsupError as exc:
            problems.append(f"{rec.slide_id}: {exc}")
        if rec.annotation is None:
            continue
        try:
            if fast and _is_mask(rec.annotation):
                unchecked.append(rec.slide_id)
                continue
            ann = read_annotations(rec.annotation, cfg.annotations, dims, rec.label)
        except MixsupError as exc:
            problems.append(f"{rec.slide_id}: {exc}")
            continue
        lines.append(_annotation_line(rec.slide_id, rec.annotation, ann, mpp))
    if problems:
        raise DatasetError(
            f"{len(problems)} problem(s):\n  - " + "\n  - ".join(problems),
            "fix or replace those files, or drop their slides from slides.csv", ds.root)
    return Validation(ds, opened, tuple(lines), tuple(unchecked), tuple(tissue))


def _open(rec: SlideRecord, cfg: Config) -> tuple[tuple[int, int], float]:
    """(level-0 size, MPP) of a slide that opens, decodes and has a usable MPP."""
    with open_slide(rec.path, cfg.reader.backend, cfg.reader.mpp,
                    cache_bytes=cfg.reader.cache_bytes) as slide:
        return slide.dimensions, slide.mpp  # .mpp raises when there is none


def _tissue_line(rec: SlideRecord, cfg: Config, fast: bool) -> str | None:
    """The slide's tissue file (read, and checked against the slide unless ``fast``), or the
    share of its tissue the QC removes; None when tissue is detected without QC."""
    t = cfg.tissue
    given = given_tissue(rec, t)
    if given is not None:
        if not fast:
            with open_slide(rec.path, cfg.reader.backend, cfg.reader.mpp,
                            cache_bytes=cfg.reader.cache_bytes) as slide:
                given.check_bounds(slide.dimensions)
        return f"  {rec.slide_id}: {given.path}: {len(given.polygons)} polygon(s)"
    if fast or not (t.remove_pen or t.remove_blur):
        return None
    with open_slide(rec.path, cfg.reader.backend, cfg.reader.mpp,
                    cache_bytes=cfg.reader.cache_bytes) as slide:
        removed = slide_tissue(slide, t).removed
    return f"  {rec.slide_id}: QC removed {describe_removed(removed)} of the detected tissue"


def _is_mask(path: Path) -> bool:
    return recognises(read_bytes(path, "annotation file", 8, refuse_longer=False))


def _annotation_line(slide_id: str, path: Path, ann: SlideAnnotations, mpp: float | None) -> str:
    kind = "mask image" if _is_mask(path) else "outlines"
    parts = len(polygon_parts(ann.tumor))
    area = (f"{ann.tumor.area * mpp * mpp / 1e6:.4f} mm²" if mpp
            else f"{ann.tumor.area:.0f} px² (slides not opened)")
    where = "inside an ROI" if ann.has_roi else "whole slide labelled"
    return f"  {slide_id}: {path.name} ({kind}): tumour {area} in {parts} region(s), {where}"
