"""OpenSlide backend (openslide-python with the openslide-bin library)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mixsup.slides.backends.base import parse_mpp


class OpenSlideBackend:
    name = "openslide"

    def __init__(self, path: str, cache_bytes: int) -> None:
        import openslide

        self._slide = openslide.OpenSlide(path)
        if cache_bytes > 0 and hasattr(openslide, "OpenSlideCache"):
            self._slide.set_cache(openslide.OpenSlideCache(cache_bytes))

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple(self._slide.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self._slide.level_downsamples)

    @property
    def properties(self) -> Mapping[str, str]:
        return self._slide.properties

    def mpp(self) -> tuple[float, float] | None:
        return parse_mpp(self._slide.properties, "openslide")

    def read_rgba(self, location: tuple[int, int], level: int,
                  size: tuple[int, int]) -> np.ndarray:
        return np.asarray(self._slide.read_region(location, level, size))

    def close(self) -> None:
        self._slide.close()


def open_backend(path: str, cache_bytes: int) -> OpenSlideBackend:
    return OpenSlideBackend(path, cache_bytes)
