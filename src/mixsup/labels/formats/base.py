"""What every annotation format module provides: its recogniser and its parser."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from mixsup.errors import AnnotationError

Outline = tuple[str, BaseGeometry]  # (class name as written in the file, level-0 geometry)


@dataclass(frozen=True)
class AnnotationFormat:
    name: str
    syntax: Literal["xml", "json"]  # how the file is decoded before the two functions see it
    recognises: Callable[[Any], bool]  # decoded document -> is it this format?
    parse: Callable[[Any, Path], list[Outline]]  # (decoded document, file path) -> outlines


def polygon(points: list[tuple[float, float]], path: Path, name: str) -> Polygon:
    """A polygon from an outline's vertices; fewer than 3 is the file's error."""
    if len(points) < 3:
        raise AnnotationError(f"outline in class {name!r} has {len(points)} point(s)",
                              "delete that outline or redraw it with at least 3 points", path)
    return Polygon(points)


def vertex(element: Any, path: Path, name: str) -> tuple[float, float]:
    """(X, Y) of an XML vertex element; a missing or non-numeric coordinate is the file's error."""
    try:
        return float(element.get("X")), float(element.get("Y"))
    except (TypeError, ValueError):
        raise AnnotationError(f"a vertex of class {name!r} has no numeric X and Y "
                              f"({element.get('X')!r}, {element.get('Y')!r})",
                              "fix or delete that vertex in the annotation file", path) from None
