"""Deep Zoom tiles, cut on demand from the slide and from its stitched probability map.

OpenSlide's ``DeepZoomGenerator`` does the tile arithmetic over a small OpenSlide-like
description of either image; the pixels come from the project's reader (every backend it
opens) or from the probability map's zarr store, a band at a time, so no tile ever needs more
than a bounded amount of memory, whatever the slide's size or pyramid.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from mixsup.errors import MixsupError
from mixsup.render.heatmap import FLOOR, jet_rgb
from mixsup.slides.reader import Slide
from mixsup.storage.user_files import finite

TILE_SIZE, OVERLAP = 254, 1
# Largest region (pixels) read in one go; bigger ones (a slide without a pyramid, seen whole)
# are read in bands of rows and shrunk band by band.
MAX_READ_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class Pyramid:
    """The part of OpenSlide's slide interface that DeepZoomGenerator reads."""

    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def get_best_level_for_downsample(self, downsample: float) -> int:
        """OpenSlide's rule: the last level whose downsample does not exceed ``downsample``."""
        best = 0
        for level, d in enumerate(self.level_downsamples):
            if d <= downsample:
                best = level
        return best


class TileOutOfRange(LookupError):
    """A Deep Zoom level or tile address the image does not have."""


class _Tiles:
    """One image's Deep Zoom pyramid; subclasses read a region of one of its levels."""

    fmt = "jpeg"

    def __init__(self, pyramid: Pyramid) -> None:
        self.pyramid = pyramid
        self.dz = DeepZoomGenerator(pyramid, tile_size=TILE_SIZE, overlap=OVERLAP)  # type: ignore[arg-type]

    def dzi(self) -> str:
        return self.dz.get_dzi(self.fmt)

    def tile(self, level: int, col: int, row: int) -> bytes:
        if not 0 <= level < self.dz.level_count:
            raise TileOutOfRange(f"level {level}")
        cols, rows = self.dz.level_tiles[level]
        if not (0 <= col < cols and 0 <= row < rows):
            raise TileOutOfRange(f"tile {col}_{row} of level {level}")
        location, slide_level, size = self.dz.get_tile_coordinates(level, (col, row))
        out_size = self.dz.get_tile_dimensions(level, (col, row))
        return self.encode(self._shrunk(location, slide_level, size, out_size))

    def _shrunk(self, location: tuple[int, int], level: int, size: tuple[int, int],
                out_size: tuple[int, int]) -> np.ndarray:
        """The region resized to ``out_size``, read in bands when it is large."""
        (w, h), (ow, oh) = size, out_size
        if w * h <= MAX_READ_PIXELS:
            return _resize(self.read(location, level, size), out_size)
        ds = self.pyramid.level_downsamples[level]
        band_rows = max(1, MAX_READ_PIXELS // w)
        out_band = max(1, band_rows * oh // h)
        parts = []
        for top in range(0, oh, out_band):
            bottom = min(oh, top + out_band)
            y0, y1 = top * h // oh, max(top * h // oh + 1, bottom * h // oh)
            band = self.read((location[0], location[1] + round(y0 * ds)), level, (w, y1 - y0))
            parts.append(_resize(band, (ow, bottom - top)))
        return np.concatenate(parts, axis=0)

    def read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, pixels: np.ndarray) -> bytes:
        raise NotImplementedError


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (a.shape[1], a.shape[0]) == tuple(size):
        return a
    return cv2.resize(a, size, interpolation=cv2.INTER_AREA)


class TilesClosed(Exception):
    """The slide was closed (evicted from the server's open slides) while a request held it."""


class SlideTiles(_Tiles):
    """JPEG tiles of the slide itself."""

    def __init__(self, path: Path) -> None:
        self.slide = Slide(path)
        info = self.slide.info
        self.lock = threading.Lock()  # not every backend's handle is safe across threads
        self.closed = False
        super().__init__(Pyramid(info.level_dimensions, info.level_downsamples))

    @property
    def mpp(self) -> float | None:
        return self.slide.info.mpp

    def read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        with self.lock:
            if self.closed:  # the Slide would reopen itself, outside the server's count
                raise TilesClosed(str(self.slide.path))
            return self.slide.read_region(location, level, size)

    def encode(self, pixels: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(buf, "JPEG", quality=80)
        return buf.getvalue()

    def close(self) -> None:
        """Call with ``lock`` held."""
        self.closed = True
        self.slide.close()


class MapTiles(_Tiles):
    """PNG tiles of the stitched probability map in the heatmaps' colours, transparent below
    the heatmaps' floor (and where no patch was scored, 0) so that the tissue stays visible.
    Coarser levels are strided reads of the one stored level."""

    fmt = "png"

    def __init__(self, path: Path, slide_dimensions: tuple[int, int]) -> None:
        from mixsup.storage.artefacts import open_array

        try:
            self.array = open_array(path)
        except (OSError, ValueError, KeyError) as exc:  # zarr raises several types
            raise MixsupError(f"cannot open the probability map ({type(exc).__name__})",
                              "re-run `mixsup predict` for this slide", path) from exc
        if self.array.ndim != 2 or self.array.dtype.kind != "f":
            raise MixsupError("the probability map is not a 2-D float array",
                              "re-run `mixsup predict` for this slide", path)
        attrs: dict[str, Any] = dict(self.array.attrs)
        if list(attrs.get("level0_dimensions", [])) != list(slide_dimensions):
            raise MixsupError(f"the probability map was made for a slide of "
                              f"{attrs.get('level0_dimensions')} px, not {list(slide_dimensions)}",
                              "the slide file changed since the prediction: predict it again",
                              path)
        try:
            self.downsample = finite(attrs.get("downsample"), "its downsample attribute", path,
                                     low=1e-6, high=1e6)
        except MixsupError as exc:
            raise MixsupError(f"the probability map's {exc.what}",
                              "re-run `mixsup predict` for this slide", path) from None
        h, w = self.array.shape
        dims, downs = [(w, h)], [1.0]
        while max(dims[-1]) > TILE_SIZE:
            d = downs[-1] * 2
            dims.append((max(1, -(-w // int(d))), max(1, -(-h // int(d)))))
            downs.append(d)
        super().__init__(Pyramid(tuple(dims), tuple(downs)))

    def read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        step = int(self.pyramid.level_downsamples[level])
        (x0, y0), (w, h) = location, size
        a = np.asarray(self.array[y0:y0 + h * step:step, x0:x0 + w * step:step], np.float32)
        out = np.zeros((h, w), np.float32)  # transparent beyond the map's edge
        out[:a.shape[0], :a.shape[1]] = a
        return out

    def encode(self, prob: np.ndarray) -> bytes:
        rgba = np.zeros((*prob.shape, 4), np.uint8)
        rgba[..., :3] = jet_rgb((np.clip(prob, 0, 1) * 255).astype(np.uint8))
        rgba[..., 3] = np.where(prob >= FLOOR, 255, 0)
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA),
                               [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise RuntimeError("PNG encoding failed")
        return png.tobytes()
