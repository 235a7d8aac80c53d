"""Plans of synthetic slides (tissue, tumour, labels, splits, centers, ROIs) and their writing.

The two generators differ only in how they paint pixels; the plan and the files around the
slides (slides.csv, annotations/, the answer key) are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from mixsup.labels.formats.qupath import write_geojson
from mixsup.labels.regions import Region, SlideAnnotations
from mixsup.labels.stages import stages_from_nodes, write_stage_csv
from mixsup.labels.table import write_slides_csv
from mixsup.runtime.progress import progress_bar
from mixsup.synth.pyramid_tiff import Renderer, write_pyramid

CENTERS = ("A", "B")


@dataclass(frozen=True)
class SlideLayout:
    slide_id: str
    width: int
    height: int
    label: int
    split: str
    center: str
    tissue: BaseGeometry
    tumor: BaseGeometry  # empty on negative slides
    roi: BaseGeometry | None  # the pixel-annotated region, when the slide is annotated
    seed: int
    patient: str | None = None
    node_class: str | None = None


def blob(rng: np.random.Generator, cx: float, cy: float, radius: float,
         irregularity: float = 0.35, n: int = 64) -> Polygon:
    """A smooth, irregular closed shape: a circle whose radius has low-frequency noise."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    for k in range(2, 6):
        r += irregularity / k * rng.normal() * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    r = radius * np.clip(r, 0.35, None)
    return Polygon(np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)]))


def split_names(n: int, fractions: tuple[float, float, float]) -> list[str]:
    n_val = round(n * fractions[1])
    n_test = round(n * fractions[2])
    n_train = n - n_val - n_test
    return ["train"] * n_train + ["val"] * n_val + ["test"] * n_test


def plan_slides(n_slides: int, width: int, height: int, seed: int = 0,
                positive_fraction: float = 0.5, annotated_fraction: float = 0.5,
                tumor_radius: tuple[float, float] = (0.04, 0.1),
                splits: tuple[float, float, float] = (0.6, 0.2, 0.2),
                centers: tuple[str, ...] = CENTERS, prefix: str = "slide") -> list[SlideLayout]:
    """Labels are balanced within each split; pixel annotations come from center A's train slides.

    ``tumor_radius`` is a fraction of the slide's shorter side.
    """
    rng = np.random.default_rng(seed)
    names = split_names(n_slides, splits)
    layouts = []
    for split in ("train", "val", "test"):
        idx = [i for i, s in enumerate(names) if s == split]
        n_pos = int(len(idx) * positive_fraction + 0.5)
        labels = [1] * n_pos + [0] * (len(idx) - n_pos)
        rng.shuffle(labels)
        for j, (i, label) in enumerate(zip(idx, labels, strict=True)):
            center = centers[j % len(centers)]
            annotate = (split == "train" and center == centers[0]
                        and rng.uniform() < annotated_fraction)
            layouts.append(_plan_one(rng, f"{prefix}_{i:03d}", width, height, label, split,
                                     center, annotate, tumor_radius, seed * 100003 + i))
    return sorted(layouts, key=lambda s: s.slide_id)


def _plan_one(rng: np.random.Generator, slide_id: str, w: int, h: int, label: int, split: str,
              center: str, annotate: bool, tumor_radius: tuple[float, float],
              seed: int) -> SlideLayout:
    side = min(w, h)
    parts = []
    for _ in range(int(rng.integers(1, 3))):
        r = side * rng.uniform(0.22, 0.32)
        parts.append(blob(rng, rng.uniform(r, w - r), rng.uniform(r, h - r), r, 0.45))
    tissue = shapely.union_all(parts).intersection(shapely.box(0, 0, w, h))
    tumor: BaseGeometry = Polygon()
    if label == 1:
        lesions = []
        for _ in range(int(rng.integers(1, 3))):
            r = side * rng.uniform(*tumor_radius)
            inner = tissue.buffer(-r * 0.8)
            if inner.is_empty:
                inner = tissue
            c = _random_point_in(rng, inner)
            lesions.append(blob(rng, c[0], c[1], r, 0.5))
        tumor = shapely.union_all(lesions).intersection(tissue)
    roi = None
    if annotate:
        anchor = tumor if not tumor.is_empty else tissue
        c = _random_point_in(rng, anchor)
        half = side * rng.uniform(0.18, 0.28)
        roi = shapely.box(c[0] - half, c[1] - half, c[0] + half, c[1] + half).intersection(
            shapely.box(0, 0, w, h))
    return SlideLayout(slide_id, w, h, label, split, center, tissue, tumor, roi, seed)


# Camelyon17 training distribution of node classes (500 nodes).
NODE_RATES = {"negative": 323, "itc": 35, "micro": 57, "macro": 85}
# Largest lesion diameter per class in µm, inside the clinical bounds
# (itc <= 0.2 mm, micro 0.2-2 mm, macro > 2 mm).
NODE_DIAMETER_UM = {"itc": (60.0, 170.0), "micro": (350.0, 1700.0), "macro": (2300.0, 2900.0)}


def plan_patients(n_patients: int, size: int, mpp: float, seed: int = 0,
                  test_fraction: float = 0.4, annotated_fraction: float = 0.5,
                  centers: tuple[str, ...] = CENTERS) -> list[SlideLayout]:
    """Five nodes per patient, node classes at Camelyon17 rates, lesion sizes in µm."""
    rng = np.random.default_rng(seed)
    n_test = round(n_patients * test_fraction)
    classes = list(NODE_RATES)
    p = np.array(list(NODE_RATES.values()), float)
    layouts = []
    for pi in range(n_patients):
        split = "test" if pi >= n_patients - n_test else "train"
        center = centers[pi % len(centers)]
        for node in range(5):
            node_class = classes[rng.choice(len(classes), p=p / p.sum())]
            tissue = blob(rng, size / 2, size / 2, size * rng.uniform(0.40, 0.44), 0.2)
            tissue = tissue.intersection(shapely.box(0, 0, size, size))
            tumor: BaseGeometry = Polygon()
            if node_class != "negative":
                lo, hi = NODE_DIAMETER_UM[node_class]
                r = rng.uniform(lo, hi) / 2 / mpp
                inner = tissue.buffer(-r)
                c = _random_point_in(rng, inner if not inner.is_empty else tissue)
                tumor = blob(rng, c[0], c[1], r, 0.15).intersection(tissue)
            annotate = (split == "train" and center == centers[0] and node_class != "negative"
                        and rng.uniform() < annotated_fraction)
            roi = None
            if annotate:
                half = max(tumor.bounds[2] - tumor.bounds[0], 400) * 0.75
                cx, cy = tumor.centroid.x, tumor.centroid.y
                roi = shapely.box(cx - half, cy - half, cx + half, cy + half).intersection(
                    shapely.box(0, 0, size, size))
            layouts.append(SlideLayout(
                f"patient_{pi:03d}_node_{node}", size, size, int(node_class != "negative"),
                split, center, tissue, tumor, roi, seed * 100003 + pi * 10 + node,
                patient=f"patient_{pi:03d}", node_class=node_class))
    return layouts


def _random_point_in(rng: np.random.Generator, geom: BaseGeometry) -> tuple[float, float]:
    minx, miny, maxx, maxy = geom.bounds
    for _ in range(1000):
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if geom.contains(shapely.Point(x, y)):
            return x, y
    p = geom.representative_point()
    return p.x, p.y


def answer_key(data_dir: str | Path) -> Path:
    """Where ``mixsup synth`` writes the true outline of every slide: beside the dataset, not
    in it, so that nothing reading the dataset (training) can see it."""
    data_dir = Path(data_dir)
    return data_dir.parent / f"{data_dir.name}-truth"


def write_dataset(out: str | Path, layouts: list[SlideLayout], mpp: float,
                  renderer_for: Callable[[SlideLayout], Renderer], progress: bool = True,
                  compression: str = "jpeg", truth_dir: str | Path | None = None) -> Path:
    """Write slides/, slides.csv, annotations/ (annotated slides) and, for patient datasets,
    stage_labels.csv in the Camelyon17 format; and the answer key (every slide's true tumour
    outlines, none on negative slides) to ``truth_dir``, by default ``answer_key(out)``."""
    out = Path(out)
    key = Path(truth_dir) if truth_dir is not None else answer_key(out)
    rows = []
    for lay in progress_bar(layouts, desc="synth slides", unit="slide", disable=not progress):
        rel = Path("slides") / f"{lay.slide_id}.tiff"
        write_pyramid(out / rel, lay.width, lay.height, renderer_for(lay), mpp,
                      compression=compression)
        if lay.roi is not None:
            regions = [Region("ROI", "roi", lay.roi)]
            inside = lay.tumor.intersection(lay.roi)
            if not inside.is_empty and inside.area > 0:
                regions.append(Region("Tumor", "tumor", _polygonal(inside)))
            write_geojson(out / "annotations" / f"{lay.slide_id}.geojson",
                          SlideAnnotations(tuple(regions)))
        truth = [Region("Tumor", "tumor", _polygonal(lay.tumor))] if lay.label == 1 else []
        write_geojson(key / f"{lay.slide_id}.geojson", SlideAnnotations(tuple(truth)))
        rows.append({"slide_id": lay.slide_id, "path": rel.as_posix(), "label": lay.label,
                     "split": lay.split, "center": lay.center, "patient": lay.patient,
                     "node_class": lay.node_class})
    write_slides_csv(out / "slides.csv", rows)
    nodes: dict[str, dict[int, str]] = {}
    for lay in layouts:
        if lay.patient and lay.node_class:
            nodes.setdefault(lay.patient, {})[int(lay.slide_id.rsplit("_", 1)[1])] = \
                lay.node_class
    if nodes:
        write_stage_csv(out / "stage_labels.csv", nodes, stages_from_nodes(nodes))
    return out


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type == "Polygon"]
    return shapely.union_all(polys)
