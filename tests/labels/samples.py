"""Small GeoJSON documents and mask comparisons shared by the label tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from mixsup.labels.regions import POSITIVE, SlideAnnotations

SQUARE = [[10, 10], [50, 10], [50, 50], [10, 50], [10, 10]]
ROI = [[0, 0], [80, 0], [80, 80], [0, 80], [0, 0]]


def fc(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def feat(coords: list[list[float]], name: str, holes: tuple = ()) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Polygon",
                                            "coordinates": [coords, *holes]},
            "properties": {"classification": {"name": name}}}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a == POSITIVE, b == POSITIVE
    return (a & b).sum() / max((a | b).sum(), 1)


def window(ann: SlideAnnotations, ds: int = 32) -> tuple[float, float, int, int, int]:
    """A window over the tumour's bounds, at ``ds`` level-0 px per mask pixel."""
    b = ann.tumor.bounds
    return b[0], b[1], int((b[2] - b[0]) / ds) + 2, int((b[3] - b[1]) / ds) + 2, ds
