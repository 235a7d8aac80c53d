"""QuPath GeoJSON: reading its features, and writing annotations that QuPath imports."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from mixsup.errors import AnnotationError
from mixsup.labels.formats.base import AnnotationFormat, Outline
from mixsup.labels.regions import ROLE_COLORS, Region, SlideAnnotations
from mixsup.storage.atomic import write_json

log = logging.getLogger(__name__)


# QuPath object types that a model or a detector made (mixsup export-qupath writes
# detections): an export of "all objects" must not turn them into pixel labels.
MODEL_OUTPUT = frozenset({"detection", "cell", "tile"})
# QuPath 0.2 marked an object's type in the feature's "id"
LEGACY_IDS = {"PathDetectionObject": "detection", "PathCellObject": "cell",
              "PathTileObject": "tile", "PathAnnotationObject": "annotation"}


def recognises(data: Any) -> bool:
    """A FeatureCollection, one Feature, or a bare list of features (QuPath's own export)."""
    if isinstance(data, list):
        return True
    return isinstance(data, dict) and data.get("type") in ("FeatureCollection", "Feature")


def parse(data: dict[str, Any] | list[Any], path: Path) -> list[Outline]:
    """Polygon features named by their classification, else their name; others skipped."""
    if isinstance(data, list):
        features = data
    elif data.get("type") == "FeatureCollection":
        features = data.get("features", [])
    else:
        features = [data]
    if not isinstance(features, list):
        raise AnnotationError("the FeatureCollection's features are not a list",
                              "export the annotations as GeoJSON from QuPath", path)
    out = []
    for i, feat in enumerate(features):
        if not isinstance(feat, dict) or not isinstance(feat.get("geometry"), dict):
            raise AnnotationError(f"feature {i} has no geometry",
                                  "export the annotations as GeoJSON from QuPath", path)
        props = feat.get("properties")
        props = props if isinstance(props, dict) else {}
        kind = props.get("objectType", props.get("object_type", feat.get("id")))
        kind = LEGACY_IDS.get(kind, kind) if isinstance(kind, str) else None
        if kind in MODEL_OUTPUT:
            log.info("%s: skipping %s feature %d (a model's output, not a label)", path, kind, i)
            continue
        cls = props.get("classification")
        name = cls.get("name") if isinstance(cls, dict) else cls
        name = name or props.get("name") or "unclassified"
        _check_numbers(feat["geometry"], i, path)
        try:
            geom = shape(feat["geometry"])
        except Exception as exc:
            raise AnnotationError(f"feature {i} ({str(name)[:40]!r}) has a malformed geometry "
                                  f"({type(exc).__name__})", "export the annotations again",
                                  path) from exc
        if geom.geom_type == "GeometryCollection":
            geom = _polygonal_part(geom, i, path)
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            log.info("%s: skipping %s feature %d", path, geom.geom_type, i)
            continue
        out.append((str(name), geom))
    return out


def _check_numbers(geometry: dict[str, Any], i: int, path: Path) -> None:
    """Every coordinate a finite number (JSON's true and false are not), checked without
    recursion before shapely sees them."""
    stack: list[Any] = [geometry]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.get(k) for k in ("coordinates", "geometries") if k in node)
        elif isinstance(node, list):
            stack.extend(node)
        elif not isinstance(node, int | float) or isinstance(node, bool) or not math.isfinite(
                float(node) if abs(node) < 1e308 else math.inf):
            raise AnnotationError(f"feature {i} has a NaN or infinite coordinate, or one that "
                                  f"is not a number ({str(node)[:40]!r})",
                                  "fix or delete that outline and export again", path)


def _polygonal_part(geom: BaseGeometry, i: int, path: Path) -> BaseGeometry:
    """The polygons of a GeometryCollection (at any depth) as one outline; other parts are
    dropped with a warning."""
    polys, others, stack = [], [], list(geom.geoms)
    while stack:
        g = stack.pop()
        if g.geom_type in ("Polygon", "MultiPolygon"):
            polys.append(g)
        elif g.geom_type == "GeometryCollection":
            stack.extend(g.geoms)
        else:
            others.append(g.geom_type)
    if others:
        log.warning("%s: feature %d: dropped the %s part(s) of a GeometryCollection", path, i,
                    ", ".join(sorted(set(others))))
    return shapely.union_all(polys) if polys else geom


FORMAT = AnnotationFormat("qupath", "json", recognises, parse)


def to_geojson(annotations: SlideAnnotations) -> dict[str, Any]:
    """A FeatureCollection that QuPath (0.3+) imports as annotations."""
    features = []
    for r in annotations.regions:
        props: dict[str, Any] = {
            "objectType": "annotation",
            "name": r.name,
            "classification": {"name": r.classification or _qupath_class(r),
                               "color": ROLE_COLORS[r.role]},
        }
        if r.measurements:
            props["measurements"] = dict(r.measurements)
        features.append({"type": "Feature", "geometry": mapping(r.geometry),
                         "properties": props})
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | Path, annotations: SlideAnnotations) -> None:
    write_json(path, to_geojson(annotations))


def _qupath_class(region: Region) -> str:
    return {"tumor": "Tumor", "roi": "ROI", "negative": "Negative"}.get(region.role, region.name)
