"""Aperio ImageScope XML: layers of regions, some of them cut-outs (``NegativeROA``)."""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element

import shapely
from shapely.geometry.base import BaseGeometry

from mixsup.labels.formats.base import AnnotationFormat, Outline, polygon, vertex


def recognises(root: Element) -> bool:
    return root.tag == "Annotations" and root.find("Annotation/Regions") is not None


def parse(root: Element, path: Path) -> list[Outline]:
    """One outline per layer: its Name, else its first attribute name, is the class."""
    out = []
    for ann in root.iter("Annotation"):
        name = ann.get("Name") or ""
        if not name:
            attrs = [a.get("Name", "") for a in ann.iter("Attribute")]
            attrs = [a for a in attrs if a and a != "Description"]
            name = attrs[0] if attrs else f"layer_{ann.get('Id', '?')}"
        positive: list[BaseGeometry] = []
        negative: list[BaseGeometry] = []
        for reg in ann.iter("Region"):
            pts = [vertex(v, path, name) for v in reg.iter("Vertex")]
            poly = polygon(pts, path, name)
            (negative if reg.get("NegativeROA") == "1" else positive).append(poly)
        if not positive:
            continue
        geom = shapely.union_all(positive)
        if negative:
            geom = geom.difference(shapely.union_all(negative))
        out.append((name, geom))
    return out


FORMAT = AnnotationFormat("imagescope", "xml", recognises, parse)
