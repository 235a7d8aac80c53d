"""ASAP XML (Camelyon16/17): annotations grouped by ``PartOfGroup``."""

from __future__ import annotations

import logging
from pathlib import Path
from xml.etree.ElementTree import Element

from mixsup.labels.formats.base import AnnotationFormat, Outline, polygon, vertex

log = logging.getLogger(__name__)


def recognises(root: Element) -> bool:
    return root.tag == "ASAP_Annotations"


def parse(root: Element, path: Path) -> list[Outline]:
    """One outline per annotation, named by its group; Spline control points used as vertices."""
    out = []
    for ann in root.iter("Annotation"):
        kind = ann.get("Type", "Polygon")
        group = ann.get("PartOfGroup") or ann.get("Name") or ""
        if kind in ("Dot", "PointSet", "Measurement"):
            log.info("%s: skipping %s annotation %r", path, kind, ann.get("Name"))
            continue
        coords = sorted(ann.iter("Coordinate"), key=lambda c: int(float(c.get("Order", 0))))
        pts = [vertex(c, path, group) for c in coords]
        out.append((group, polygon(pts, path, group)))
    return out


FORMAT = AnnotationFormat("asap", "xml", recognises, parse)
