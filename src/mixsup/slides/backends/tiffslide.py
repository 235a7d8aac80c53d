"""tiffslide backend (pure Python, tifffile + zarr); scales with processes rather than threads."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mixsup.slides.backends.base import parse_mpp, rgba_to_rgb


class TiffSlideBackend:
    name = "tiffslide"

    def __init__(self, path: str, cache_bytes: int) -> None:
        import tiffslide

        del cache_bytes  # tiffslide reads tiles through zarr without a shared tile cache
        self._slide = tiffslide.TiffSlide(path)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((int(w), int(h)) for w, h in self._slide.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self._slide.level_downsamples)

    @property
    def properties(self) -> Mapping[str, str]:
        return {k: str(v) for k, v in self._slide.properties.items() if v is not None}

    def mpp(self) -> tuple[float, float] | None:
        return parse_mpp(self.properties, "tiffslide")

    def read_rgb(self, location: tuple[int, int], level: int,
                 size: tuple[int, int]) -> np.ndarray:
        return rgba_to_rgb(np.asarray(self._slide.read_region(location, level, size,
                                                              as_array=True)))

    def close(self) -> None:
        self._slide.close()


def open_backend(path: str, cache_bytes: int) -> TiffSlideBackend:
    return TiffSlideBackend(path, cache_bytes)
