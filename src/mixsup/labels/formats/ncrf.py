"""Baidu NCRF's Camelyon16 JSON: tumour (positive) and exclusion (negative) vertex lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixsup.errors import AnnotationError
from mixsup.labels.formats.base import AnnotationFormat, Outline, point, polygon


def recognises(data: Any) -> bool:
    return isinstance(data, dict) and ("positive" in data or "negative" in data)


def parse(data: dict[str, Any], path: Path) -> list[Outline]:
    """Outlines named by role: ``tumor`` for positive, ``negative`` for exclusions."""
    out = []
    for key, role_name in (("positive", "tumor"), ("negative", "negative")):
        items = data.get(key, [])
        if not isinstance(items, list):
            raise AnnotationError(f"NCRF {key!r} is {type(items).__name__}, not a list of "
                                  "outlines", "export the annotations again", path)
        for i, item in enumerate(items):
            vertices = item.get("vertices") if isinstance(item, dict) else None
            if not isinstance(vertices, list):
                raise AnnotationError(f"NCRF {key} outline {i} has no list of vertices",
                                      "give each outline \"vertices\": [[x, y], ...]", path)
            pts = [point(v, path, role_name) for v in vertices]
            out.append((role_name, polygon(pts, path, role_name)))
    return out


FORMAT = AnnotationFormat("ncrf", "json", recognises, parse)
