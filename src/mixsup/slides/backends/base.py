"""What a backend must offer: the subset of the OpenSlide API that mixsup uses."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]: ...

    @property
    def level_downsamples(self) -> tuple[float, ...]: ...

    @property
    def properties(self) -> Mapping[str, str]: ...

    def mpp(self) -> tuple[float, float] | None: ...

    def read_rgb(self, location: tuple[int, int], level: int,
                 size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 (h, w, 3); pixels outside the scanned area are white, like glass."""
        ...

    def close(self) -> None: ...


def parse_mpp(props: Mapping[str, str], prefix: str) -> tuple[float, float] | None:
    try:
        x = float(props[f"{prefix}.mpp-x"])
        y = float(props[f"{prefix}.mpp-y"])
    except (KeyError, TypeError, ValueError):
        return None
    if x == 0 or y == 0 or math.isnan(x) or math.isnan(y):
        return None
    return x, y  # the Slide refuses implausible values (negative, infinite, 1e308)


def rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    """OpenSlide's premultiplied RGBA composited on white (also accepts RGB and grey)."""
    if rgba.ndim == 3 and rgba.shape[2] == 4:
        rgb = np.ascontiguousarray(rgba[..., :3])
        alpha = rgba[..., 3]
        if alpha.min() < 255:
            # premultiplied: on white that is rgb + (255 - a), exact in integers (and a
            # quarter of the memory of a float32 copy).
            rgb = (rgb.astype(np.uint16) + (255 - alpha)[..., None]).clip(0, 255).astype(np.uint8)
        return rgb
    if rgba.ndim == 2:
        return np.repeat(rgba[..., None], 3, axis=2)
    return np.ascontiguousarray(rgba[..., :3])
