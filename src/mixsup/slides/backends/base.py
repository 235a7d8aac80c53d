"""What a backend must offer: the subset of the OpenSlide API that mixsup uses."""

from __future__ import annotations

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

    def read_rgba(self, location: tuple[int, int], level: int,
                  size: tuple[int, int]) -> np.ndarray: ...

    def close(self) -> None: ...


def parse_mpp(props: Mapping[str, str], prefix: str) -> tuple[float, float] | None:
    try:
        x = float(props[f"{prefix}.mpp-x"])
        y = float(props[f"{prefix}.mpp-y"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (x > 0 and y > 0):
        return None
    return x, y
