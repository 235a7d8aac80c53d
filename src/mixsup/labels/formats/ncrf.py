"""Baidu NCRF's Camelyon16 JSON: tumour (positive) and exclusion (negative) vertex lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixsup.labels.formats.base import AnnotationFormat, Outline, polygon


def recognises(data: Any) -> bool:
    return isinstance(data, dict) and ("positive" in data or "negative" in data)


def parse(data: dict[str, Any], path: Path) -> list[Outline]:
    """Outlines named by role: ``tumor`` for positive, ``negative`` for exclusions."""
    out = []
    for key, role_name in (("positive", "tumor"), ("negative", "negative")):
        for item in data.get(key, []):
            pts = [(float(x), float(y)) for x, y in item["vertices"]]
            out.append((role_name, polygon(pts, path, role_name)))
    return out


FORMAT = AnnotationFormat("ncrf", "json", recognises, parse)
