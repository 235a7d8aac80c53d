"""Tissue outlined elsewhere (``tissue.source=geojson``): one GeoJSON of level-0 polygons per
slide, as TRIDENT, GrandQC or a mask corrected in QuPath write it, read with the annotation
parsers and painted (holes kept) on the grid of the thumbnail that the tiler measures on.

Every polygon of the file is tissue, whatever its class. A file that is missing, unreadable,
not GeoJSON, or whose outlines lie outside its slide is a ``TissueFileError`` naming it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import Polygon

from mixsup.config import TissueConfig
from mixsup.errors import AnnotationError, TissueFileError
from mixsup.labels.annotations import EDGE_TOLERANCE
from mixsup.labels.formats import qupath, recognise
from mixsup.labels.raster import paint_polygon, polygon_parts
from mixsup.labels.table import SlideRecord
from mixsup.storage.user_files import MAX_ANNOTATION_BYTES, read_bytes

WHAT = "tissue GeoJSON"
FIX = ("export the tissue outlines again as GeoJSON (a FeatureCollection of Polygons in level-0 "
       "pixels), or point slides.csv's `tissue` column or tissue.geojson_dir at the right file")


@dataclass(frozen=True)
class GeoJSONTissue:
    """One slide's tissue outlines (a ``slides.tissue.GivenTissue``)."""

    path: str
    sha256: str
    polygons: tuple[Polygon, ...]

    def paint(self, dimensions: tuple[int, int], shape: tuple[int, int],
              downsample: float) -> np.ndarray:
        self.check_bounds(dimensions)
        mask = np.zeros(shape, dtype=np.uint8)
        for poly in self.polygons:  # a hole keeps what lay beneath: another polygon's tissue
            paint_polygon(mask, poly, 0.0, 0.0, downsample, 1)
        return mask.astype(bool)

    def check_bounds(self, dimensions: tuple[int, int]) -> None:
        """Outlines past the slide's edge are another slide's or in another frame."""
        if not self.polygons:
            return
        w, h, t = *dimensions, EDGE_TOLERANCE
        bounds = np.array([p.bounds for p in self.polygons])
        minx, miny = bounds[:, :2].min(axis=0)
        maxx, maxy = bounds[:, 2:].max(axis=0)
        if minx < -t or miny < -t or maxx > w + t or maxy > h + t:
            raise TissueFileError(
                f"the tissue outlines span ({minx:.0f}, {miny:.0f})-({maxx:.0f}, {maxy:.0f}), "
                f"outside the slide ({w}x{h} px at level 0)",
                "check that the file belongs to this slide and uses level-0 pixel coordinates "
                "(not a thumbnail's)", self.path)


def tissue_path(slide_id: str, own: Path | None, cfg: TissueConfig,
                slide: Path | None = None) -> Path:
    """A slide's tissue GeoJSON: its ``own`` file (slides.csv's ``tissue`` column), else
    ``<tissue.geojson_dir>/<slide_id>.geojson``; ``slide`` is named when it has neither."""
    if own is not None:
        return own
    if cfg.geojson_dir is None:
        raise TissueFileError(f"tissue.source=geojson, but slide {slide_id!r} has no "
                              "tissue file", "fill its `tissue` column in slides.csv or set "
                              "tissue.geojson_dir", slide)
    return Path(cfg.geojson_dir) / f"{slide_id}.geojson"


def given_tissue(rec: SlideRecord, cfg: TissueConfig) -> GeoJSONTissue | None:
    """The slide's tissue outlines with ``tissue.source=geojson``, else None."""
    if cfg.source != "geojson":
        return None
    return read_tissue_geojson(tissue_path(rec.slide_id, rec.tissue, cfg, rec.path))


def read_tissue_geojson(path: str | Path) -> GeoJSONTissue:
    """Every polygon of a QuPath-style GeoJSON (a FeatureCollection, a list of features or one
    Feature) as tissue."""
    path = Path(path)
    raw = read_bytes(path, WHAT, MAX_ANNOTATION_BYTES, TissueFileError)
    try:
        fmt, doc = recognise(raw, path)
        if fmt is not qupath.FORMAT:
            raise TissueFileError(f"the {WHAT} is not GeoJSON (it reads as {fmt.name})", FIX,
                                  path)
        outlines = fmt.parse(doc, path)
    except AnnotationError as exc:
        raise TissueFileError(exc.what, FIX, exc.path or path) from None
    polygons = tuple(p for _, geom in outlines for p in polygon_parts(geom) if not p.is_empty)
    features = _count_features(doc)
    if features and not polygons:  # no feature at all: a slide without tissue
        raise TissueFileError(f"none of its {features} feature(s) is a tissue polygon "
                              "(Polygon or MultiPolygon; QuPath detections, points and lines "
                              "are skipped)", "export the tissue as annotations with polygon "
                              "geometry", path)
    return GeoJSONTissue(str(path), hashlib.sha256(raw).hexdigest(), polygons)


def _count_features(doc: dict[str, Any] | list[Any]) -> int:
    if isinstance(doc, list):
        return len(doc)
    if doc.get("type") == "FeatureCollection":
        return len(doc.get("features") or [])
    return 1
