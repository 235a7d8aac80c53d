"""tiffslide backend (pure Python, tifffile + zarr); scales with processes rather than threads."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mixsup.slides.backends.base import parse_mpp


class TiffSlideBackend:
    name = "tiffslide"

    def __init__(self, path: str, cache_bytes: int) -> None:
        import tiffslide

        del cache_bytes  # tiffslide reads tiles through zarr without a shared tile cache
        self._slide = tiffslide.TiffSlide(path)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple(tuple(int(v) for v in d) for d in self._slide.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self._slide.level_downsamples)

    @property
    def properties(self) -> Mapping[str, str]:
        return {k: str(v) for k, v in self._slide.properties.items() if v is not None}

    def mpp(self) -> tuple[float, float] | None:
        return parse_mpp(self.properties, "tiffslide")

    def read_rgba(self, location: tuple[int, int], level: int,
                  size: tuple[int, int]) -> np.ndarray:
        arr = np.asarray(self._slide.read_region(location, level, size, as_array=True))
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.shape[2] == 3:
            alpha = np.full((*arr.shape[:2], 1), 255, dtype=np.uint8)
            arr = np.concatenate([arr, alpha], axis=2)
        return arr

    def close(self) -> None:
        self._slide.close()


def open_backend(path: str, cache_bytes: int) -> TiffSlideBackend:
    return TiffSlideBackend(path, cache_bytes)
