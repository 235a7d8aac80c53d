"""OpenSlide backend (openslide-python with the openslide-bin library)."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import numpy as np

from mixsup.slides.backends.base import parse_mpp, rgba_to_rgb


class OpenSlideBackend:
    name = "openslide"

    def __init__(self, path: str, cache_bytes: int) -> None:
        import openslide

        self._slide = openslide.OpenSlide(path)
        if hasattr(openslide, "OpenSlideCache"):
            self._slide.set_cache(_process_cache(cache_bytes, os.getpid()))

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

    def read_rgb(self, location: tuple[int, int], level: int,
                 size: tuple[int, int]) -> np.ndarray:
        return rgba_to_rgb(np.asarray(self._slide.read_region(location, level, size)))

    def close(self) -> None:
        self._slide.close()


@functools.cache
def _process_cache(capacity: int, pid: int):
    """One tile cache per process, shared by all its open slides: with a cache per slide,
    memory grew by ``capacity`` with every slide an E-step opened. ``pid`` keeps a forked
    worker from using its parent's cache."""
    import openslide

    return openslide.OpenSlideCache(capacity)


def open_backend(path: str, cache_bytes: int) -> OpenSlideBackend:
    return OpenSlideBackend(path, cache_bytes)
