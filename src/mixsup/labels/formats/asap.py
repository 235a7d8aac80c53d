"""ASAP XML (Camelyon16/17): annotations grouped by ``PartOfGroup``."""

from __future__ import annotations

import logging
from pathlib import Path
from xml.etree.ElementTree import Element

from mixsup.errors import AnnotationError
from mixsup.labels.formats.base import AnnotationFormat, Outline, polygon, vertex
from mixsup.storage.user_files import parse_number

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
        coords = list(ann.iter("Coordinate"))
        orders = [_order(c.get("Order", "0"), path, group) for c in coords]
        pts = [vertex(c, path, group)
               for _, c in sorted(zip(orders, coords, strict=True), key=lambda t: t[0])]
        out.append((group, polygon(pts, path, group)))
    return out


def _order(raw: str, path: Path, group: str) -> float:
    try:
        return parse_number(raw, "Order", path, AnnotationError)
    except AnnotationError:
        raise AnnotationError(f"a vertex of class {group!r} has Order={raw[:40]!r}, not a "
                              "number", "fix that Coordinate's Order in the XML", path) from None


FORMAT = AnnotationFormat("asap", "xml", recognises, parse)
