"""Direct tile reader for tiled TIFF and Aperio SVS: the tiles that cover a region are read with
``os.pread``, decoded by tifffile's codecs (libjpeg-turbo, OpenJPEG, zlib through imagecodecs)
and pasted, through one bounded LRU cache of decoded tiles per process.

OpenSlide stays open beside it: it gives the metadata (so levels, downsamples, MPP and
properties are exactly OpenSlide's) and reads every level that no tiled page matches.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixsup.slides.backends.openslide import OpenSlideBackend

# Tile codecs decoded here; the rest (old-style JPEG, exotic predictors...) go to OpenSlide.
CODECS = frozenset({"NONE", "JPEG", "ADOBE_DEFLATE", "DEFLATE", "LZW", "APERIO_JP2000_RGB",
                    "APERIO_JP2000_YCBC", "JPEG2000"})


# What OpenSlide reads as a plain grid of tiles per level; other TIFF vendors overlap tiles or
# place levels their own way.
VENDORS = frozenset({"aperio", "generic-tiff"})


class UnsupportedLayout(ValueError):
    """The file is not a tiled TIFF this reader decodes; OpenSlide reads it instead."""


class _MissingTile(LookupError):
    """A tile the scanner never wrote (byte count 0) or stored smaller than its place."""


@dataclass(frozen=True)
class TiledLevel:
    """One pyramid level stored as a tiled TIFF page."""

    decode: Callable[..., Any]  # tifffile's decoder of the page's tiles (made while open)
    jpegtables: bytes | None
    width: int
    height: int
    tile_w: int
    tile_h: int
    tiles_across: int
    offsets: np.ndarray  # int64 per tile: arrays, not tuples of ints (7 MB at 100k tiles)
    bytecounts: np.ndarray


def tiled_levels(tif: Any, dims: tuple[tuple[int, int], ...]) -> list[TiledLevel | None]:
    """For each OpenSlide level size, the tiled 8-bit RGB page of exactly that size (None where
    none or several match, or the page's codec or layout is not decoded here)."""
    levels: list[TiledLevel | None] = []
    for w, h in dims:
        pages = [p for p in tif.pages if p.is_tiled and (p.imagewidth, p.imagelength) == (w, h)]
        page = pages[0] if len(pages) == 1 else None
        if page is None or not _decodable(page):
            levels.append(None)
            continue
        levels.append(TiledLevel(page.decode, page.jpegtables, w, h, page.tilewidth,
                                 page.tilelength,
                                 -(-w // page.tilewidth),
                                 np.asarray(page.dataoffsets, np.int64),
                                 np.asarray(page.databytecounts, np.int64)))
    if not any(levels):
        raise UnsupportedLayout("no pyramid level is a tiled 8-bit RGB page")
    return levels


def _decodable(page: Any) -> bool:
    return (page.compression.name in CODECS and page.samplesperpixel == 3
            and page.bitspersample == 8 and page.planarconfig.name == "CONTIG"
            and page.imagedepth == 1 and page.tiledepth == 1)


@functools.cache
def _process_cache(capacity: int, pid: int) -> Any:
    """One cache per process shared by all its slides (keys name the file), so that memory is
    bounded however many slides an E-step opens; ``pid`` keeps a forked worker off its
    parent's cache."""
    from cachetools import LRUCache

    return LRUCache(maxsize=max(capacity, 1), getsizeof=lambda a: a.nbytes)


class TiffTilesBackend:
    name = "tifftiles"

    def __init__(self, path: str, cache_bytes: int) -> None:
        import openslide
        import tifffile

        # Checked before opening anything, so that the formats refused here (Ventana, Trestle,
        # Hamamatsu, DICOM, ...: OpenSlide places their tiles its own way) are not opened twice.
        vendor = openslide.OpenSlide.detect_format(path)
        if vendor not in VENDORS:
            raise UnsupportedLayout(f"OpenSlide vendor {vendor!r} is not read directly")
        self._fallback = OpenSlideBackend(path, cache_bytes)
        try:
            # Tiles are read with pread below; the pages' decoders need no open file.
            with tifffile.TiffFile(path) as tif:
                self._levels = tiled_levels(tif, self._fallback.level_dimensions)
        except Exception:
            self._fallback.close()
            raise
        self._fd = os.open(path, os.O_RDONLY)
        self._closer = weakref.finalize(self, os.close, self._fd)
        self._key = (os.path.realpath(path), os.stat(self._fd).st_mtime_ns)
        self._cache = _process_cache(cache_bytes, os.getpid())

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self._fallback.level_dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return self._fallback.level_downsamples

    @property
    def properties(self) -> Mapping[str, str]:
        return self._fallback.properties

    def mpp(self) -> tuple[float, float] | None:
        return self._fallback.mpp()

    def read_rgb(self, location: tuple[int, int], level: int,
                 size: tuple[int, int]) -> np.ndarray:
        lv = self._levels[level]
        ds = self.level_downsamples[level]
        x0, y0 = location[0] / ds, location[1] / ds
        if lv is not None and x0 == int(x0) and y0 == int(y0):
            try:
                return self._paste(lv, level, int(x0), int(y0), size)
            except Exception:  # a missing or undecodable tile: OpenSlide's turn
                pass
        # Sub-pixel origins on reduced levels, untiled levels and tiles this reader cannot
        # decode: OpenSlide's pixels, so that the two backends never disagree.
        return self._fallback.read_rgb(location, level, size)

    def _paste(self, lv: TiledLevel, level: int, x: int, y: int,
               size: tuple[int, int]) -> np.ndarray:
        w, h = size
        left, top = max(x, 0), max(y, 0)
        right, bottom = min(x + w, lv.width), min(y + h, lv.height)
        inside = left == x and top == y and right == x + w and bottom == y + h
        # white outside the image: OpenSlide's transparent pixels composited on white
        out = np.empty((h, w, 3), np.uint8) if inside else np.full((h, w, 3), 255, np.uint8)
        if right <= left or bottom <= top:
            return out
        for ty in range(top // lv.tile_h, (bottom - 1) // lv.tile_h + 1):
            for tx in range(left // lv.tile_w, (right - 1) // lv.tile_w + 1):
                tile = self._tile(lv, level, ty * lv.tiles_across + tx)
                gx, gy = tx * lv.tile_w, ty * lv.tile_h
                sx0, sy0 = max(left, gx), max(top, gy)
                sx1, sy1 = min(right, gx + lv.tile_w), min(bottom, gy + lv.tile_h)
                part = tile[sy0 - gy:sy1 - gy, sx0 - gx:sx1 - gx]
                if part.shape[:2] != (sy1 - sy0, sx1 - sx0):
                    raise _MissingTile(f"tile {tx},{ty} smaller than its place in the image")
                out[sy0 - y:sy1 - y, sx0 - x:sx1 - x] = part
        return out

    def _tile(self, lv: TiledLevel, level: int, index: int) -> np.ndarray:
        key = (*self._key, level, index)
        tile = self._cache.get(key)
        if tile is None:
            count = int(lv.bytecounts[index])
            if count == 0:
                raise _MissingTile(index)
            data = os.pread(self._fd, count, int(lv.offsets[index]))
            # Some writers store edge tiles cropped to the image: keep the shape as decoded.
            tile = lv.decode(data, index, jpegtables=lv.jpegtables)[0][0]
            if tile.nbytes <= self._cache.maxsize:
                self._cache[key] = tile
        return tile

    def close(self) -> None:
        self._closer()
        self._fallback.close()


def open_backend(path: str, cache_bytes: int) -> TiffTilesBackend:
    return TiffTilesBackend(path, cache_bytes)
