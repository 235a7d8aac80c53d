"""What every annotation format module provides: its recogniser and its parser."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from mixsup.errors import AnnotationError
from mixsup.storage.user_files import finite, parse_number

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
    """(X, Y) of an XML vertex element; a missing, non-numeric or infinite coordinate is the
    file's error."""
    x, y = element.get("X"), element.get("Y")
    try:
        return (parse_number(x, "X", path, AnnotationError),
                parse_number(y, "Y", path, AnnotationError))
    except (AnnotationError, AttributeError):
        raise AnnotationError(f"a vertex of class {name!r} has no finite numeric X and Y "
                              f"({_clip(x)}, {_clip(y)})",
                              "fix or delete that vertex in the annotation file", path) from None


def point(pair: Any, path: Path, name: str) -> tuple[float, float]:
    """(x, y) of a JSON vertex: two finite numbers (booleans are not numbers)."""
    if not isinstance(pair, list | tuple) or len(pair) < 2:
        raise AnnotationError(f"a vertex of class {name!r} is {_clip(pair)}, not [x, y]",
                              "fix or delete that vertex in the annotation file", path)
    try:
        return (finite(pair[0], "x", path, AnnotationError),
                finite(pair[1], "y", path, AnnotationError))
    except AnnotationError:
        raise AnnotationError(f"a vertex of class {name!r} is {_clip(pair)}, not two finite "
                              "numbers", "fix or delete that vertex in the annotation file",
                              path) from None


def _clip(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
