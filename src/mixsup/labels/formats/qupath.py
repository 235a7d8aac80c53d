"""QuPath GeoJSON: reading its features, and writing annotations that QuPath imports."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from shapely.geometry import mapping, shape

from mixsup.atomic import write_json
from mixsup.errors import AnnotationError
from mixsup.labels.formats.base import AnnotationFormat, Outline
from mixsup.labels.regions import ROLE_COLORS, Region, SlideAnnotations

log = logging.getLogger(__name__)


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
    out = []
    for i, feat in enumerate(features):
        if not isinstance(feat, dict) or "geometry" not in feat:
            raise AnnotationError(f"feature {i} has no geometry",
                                  "export the annotations as GeoJSON from QuPath", path)
        props = feat.get("properties") or {}
        cls = props.get("classification")
        name = cls.get("name") if isinstance(cls, dict) else cls
        name = name or props.get("name") or "unclassified"
        try:
            geom = shape(feat["geometry"])
        except Exception as exc:
            raise AnnotationError(f"feature {i} ({name!r}) has a malformed geometry ({exc})",
                                  "export the annotations again", path) from exc
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            log.info("%s: skipping %s feature %d", path, geom.geom_type, i)
            continue
        out.append((str(name), geom))
    return out


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
