"""The Slide: metadata, MPP-aware level selection and region reads in level-0 coordinates.

A Slide is cheap to pickle: the library handle is opened lazily and re-opened in each process,
so one Slide can be handed to DataLoader workers.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mixsup.config import MPP_RANGE, READER_CACHE_BYTES
from mixsup.errors import MissingMPPError, SlideReadError
from mixsup.slides.backends.base import Backend
from mixsup.slides.tiff_check import check_tiff

# "auto" tries them in this order: the direct tile reader, then OpenSlide for what it refuses.
BACKENDS = ("tifftiles", "openslide", "tiffslide")
# A level counts as fine enough for a target MPP when it is at most this much coarser.
LEVEL_MPP_TOLERANCE = 1.02


@dataclass(frozen=True)
class SlideInfo:
    path: str
    backend: str
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: float | None
    mpp_source: str
    vendor: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "backend": self.backend,
            "dimensions": list(self.level_dimensions[0]),
            "level_count": len(self.level_dimensions),
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": list(self.level_downsamples),
            "mpp": self.mpp,
            "mpp_source": self.mpp_source,
            "vendor": self.vendor,
        }


def _open_backend(name: str, path: str, cache_bytes: int) -> Backend:
    module = importlib.import_module(f"mixsup.slides.backends.{name}")
    return module.open_backend(path, cache_bytes)


class Slide:
    """A whole-slide image opened through one backend."""

    def __init__(self, path: str | Path, backend: str = "auto", mpp: float | None = None,
                 cache_bytes: int = READER_CACHE_BYTES) -> None:
        self.path = str(path)
        self._cache_bytes = cache_bytes
        self._handle: Backend | None = None
        self._pid = -1
        if not Path(self.path).is_file():
            raise SlideReadError("slide file not found", "check the path", self.path)
        check_tiff(self.path)
        order = BACKENDS if backend == "auto" else (backend,)
        if any(b not in BACKENDS for b in order):
            raise SlideReadError(f"unknown backend {backend!r}",
                                 f"use one of auto, {', '.join(BACKENDS)}", self.path)
        reasons = []
        for name in order:
            handle = None
            try:
                handle = _open_backend(name, self.path, cache_bytes)
                _probe(handle)
            except Exception as exc:  # every backend raises its own types
                # A library's own bug on a malformed file says nothing to the user
                internal = isinstance(exc, AttributeError | TypeError | KeyError | IndexError)
                reasons.append(f"{name}: cannot decode the file's structure" if internal
                               else f"{name}: {type(exc).__name__}: {exc}")
                if handle is not None:
                    handle.close()
                continue
            self.backend = name
            self._handle, self._pid = handle, os.getpid()
            break
        else:
            raise SlideReadError(
                "cannot be read as a whole-slide image (" + "; ".join(reasons) + ")",
                "check that the file is a complete, supported slide (SVS, tiled TIFF, DICOM, "
                "NDPI, MRXS...); re-export or re-download it, or drop it from slides.csv",
                self.path,
            )
        native = handle.mpp()
        self._mpp: float | None
        if mpp is not None:
            if not MPP_RANGE[0] <= mpp <= MPP_RANGE[1]:
                handle.close()
                raise SlideReadError(f"MPP {mpp} is not a plausible microns-per-pixel",
                                     f"give one between {MPP_RANGE[0]:g} and {MPP_RANGE[1]:g} "
                                     "(0.25 at 40x, 0.5 at 20x)", self.path)
            self._mpp, self._mpp_source = float(mpp), "override"
        elif native is not None and all(MPP_RANGE[0] <= v <= MPP_RANGE[1] for v in native):
            self._mpp, self._mpp_source = float(np.mean(native)), "metadata"
        elif native is not None:
            # Broken metadata (a TIFF resolution of 1e-4 px/cm, an Aperio MPP of 1e308) would
            # tile petabytes: the slide has no usable MPP, and says which value it holds.
            self._mpp, self._mpp_source = None, f"implausible ({native[0]:g} µm/px)"
        else:
            self._mpp, self._mpp_source = None, "missing"
        self.info = SlideInfo(
            path=self.path,
            backend=self.backend,
            level_dimensions=tuple((int(w), int(h)) for w, h in handle.level_dimensions),
            level_downsamples=tuple(handle.level_downsamples),
            mpp=self._mpp,
            mpp_source=self._mpp_source,
            vendor=handle.properties.get("openslide.vendor")
            or handle.properties.get("tiffslide.vendor"),
        )

    # -- process safety -------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"], state["_pid"] = None, -1
        return state

    @property
    def _backend(self) -> Backend:
        if self._handle is None or self._pid != os.getpid():
            self._handle = _open_backend(self.backend, self.path, self._cache_bytes)
            self._pid = os.getpid()
        return self._handle

    @property
    def is_open(self) -> bool:
        """Whether this process holds a backend handle (reads reopen one when not)."""
        return self._handle is not None and self._pid == os.getpid()

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata -------------------------------------------------------------------------
    @property
    def dimensions(self) -> tuple[int, int]:
        return self.info.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.info.level_dimensions)

    @property
    def mpp(self) -> float:
        if self._mpp is None:
            raise MissingMPPError(
                "the slide's metadata gives no microns-per-pixel (MPP)"
                if self._mpp_source == "missing" else
                f"the slide's metadata MPP is {self._mpp_source}, outside "
                f"{MPP_RANGE[0]:g}-{MPP_RANGE[1]:g} µm/px",
                "pass the scanner's resolution explicitly, e.g. --mpp 0.25 "
                "(or set reader.mpp in the config)",
                self.path,
            )
        return self._mpp

    def level_mpp(self, level: int) -> float:
        return self.mpp * self.info.level_downsamples[level]

    def level_for_mpp(self, target_mpp: float) -> int:
        """The coarsest level that is still at least as fine as ``target_mpp``."""
        best = 0
        for level in range(self.level_count):
            if self.level_mpp(level) <= target_mpp * LEVEL_MPP_TOLERANCE:
                best = level
        return best

    # -- pixels ---------------------------------------------------------------------------
    def read_region(self, location: tuple[int, int], level: int,
                    size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 (h, w, 3); ``location`` is in level-0 pixels, ``size`` in level pixels.

        Transparent pixels (outside the scanned area) become white, like glass.
        """
        try:
            rgb = self._backend.read_rgb((int(location[0]), int(location[1])), level,
                                         (int(size[0]), int(size[1])))
        except Exception as exc:
            raise SlideReadError(f"failed to read region {location} at level {level} "
                                 f"({type(exc).__name__}: {exc})",
                                 "the file may be truncated or corrupt; re-export it",
                                 self.path) from exc
        return rgb

    def read_at_mpp(self, location: tuple[int, int], size: int | tuple[int, int],
                    mpp: float) -> np.ndarray:
        """A region of ``size`` pixels at ``mpp`` whose top-left is ``location`` (level 0)."""
        w, h = (size, size) if isinstance(size, int) else size
        level = self.level_for_mpp(mpp)
        scale = mpp / self.level_mpp(level)
        lw, lh = max(1, round(w * scale)), max(1, round(h * scale))
        region = self.read_region(location, level, (lw, lh))
        if (lw, lh) != (w, h):
            interp = cv2.INTER_AREA if scale > 1 else cv2.INTER_LINEAR
            region = cv2.resize(region, (w, h), interpolation=interp)
        return region

    def thumbnail(self, mpp: float, max_dim: int | None = None) -> tuple[np.ndarray, float]:
        """The whole slide at about ``mpp`` (never finer than level 0, and coarser when needed
        to keep the longer side within ``max_dim`` px); returns (rgb, its mpp)."""
        w0, h0 = self.dimensions
        mpp = max(mpp, self.mpp)
        if max_dim:
            mpp = max(mpp, max(w0, h0) * self.mpp / max_dim)
        scale = self.mpp / mpp
        size = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
        level = self.level_for_mpp(mpp)
        lw, lh = self.info.level_dimensions[level]
        region = self.read_region((0, 0), level, (lw, lh))
        if (lw, lh) != size:
            region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        return region, w0 / size[0] * self.mpp


def _probe(handle: Backend) -> None:
    """Decode a few small regions so that files which open but cannot be decoded (corrupt or
    truncated: the last tiles of level 0 are the last bytes written) fail now, not mid-run."""
    top = len(handle.level_dimensions) - 1
    w, h = handle.level_dimensions[top]
    handle.read_rgb((0, 0), top, (min(w, 64), min(h, 64)))
    w0, h0 = handle.level_dimensions[0]
    size = (min(w0, 64), min(h0, 64))
    handle.read_rgb((w0 - size[0], h0 - size[1]), 0, size)


def open_slide(path: str | Path, backend: str = "auto", mpp: float | None = None,
               cache_bytes: int = READER_CACHE_BYTES) -> Slide:
    return Slide(path, backend=backend, mpp=mpp, cache_bytes=cache_bytes)
