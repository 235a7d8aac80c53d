"""Stitch per-patch probability maps into a slide-level heatmap; overlaps are averaged."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

FLOOR = 0.1  # probabilities below this are not painted (heatmap PNGs and the viewer's overlay)

class _Grid:
    """Sums and counts of patch maps pasted on a grid of ``downsample`` level-0 px per cell,
    over rows ``top`` to ``bottom``: overlapping patches are averaged, never overwritten."""

    def __init__(self, dimensions: tuple[int, int], size0: float, downsample: float) -> None:
        self.w, self.h = (max(1, int(np.ceil(d / downsample))) for d in dimensions)
        self.side = max(1, round(size0 / downsample))
        self.downsample = downsample
        self.top, self.bottom = 0, self.h
        self.total = np.zeros((0, 0), np.float32)
        self.count = np.zeros((0, 0), np.float32)

    def start(self, top: int, bottom: int) -> None:
        self.top, self.bottom = top, bottom
        self.total = np.zeros((bottom - top, self.w), np.float32)
        self.count = np.zeros_like(self.total)

    def hits(self, coords: np.ndarray) -> np.ndarray:
        """The patches that reach rows ``top`` to ``bottom``."""
        cy = np.round(coords[:, 1] / self.downsample)
        return np.nonzero((cy < self.bottom) & (cy + self.side > self.top))[0]

    def paste(self, x: float, y: float, small: np.ndarray) -> None:
        cx, cy = round(float(x) / self.downsample), round(float(y) / self.downsample)
        y0, y1 = max(cy, self.top), min(cy + self.side, self.bottom)
        x0, x1 = max(cx, 0), min(cx + self.side, self.w)
        if y1 <= y0 or x1 <= x0:
            return
        tile = cv2.resize(np.asarray(small, np.float32), (self.side, self.side),
                          interpolation=cv2.INTER_LINEAR)
        rows = slice(y0 - self.top, y1 - self.top)
        self.total[rows, x0:x1] += tile[y0 - cy:y1 - cy, x0 - cx:x1 - cx]
        self.count[rows, x0:x1] += 1

    def mean(self) -> np.ndarray:
        return np.divide(self.total, self.count, out=np.zeros_like(self.total),
                         where=self.count > 0)


def stitch(coords: np.ndarray, maps: Any, size0: float, dimensions: tuple[int, int],
           downsample: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean probability, coverage count) on a grid of ``downsample`` level-0 px per cell.

    ``maps`` is (N, m, m) array-like: an ndarray or a store's ``LazyMaps`` (read in chunks).
    """
    grid = _Grid(dimensions, size0, downsample)
    grid.start(0, grid.h)
    for (x, y), m in zip(np.asarray(coords), maps, strict=True):
        grid.paste(x, y, m)
    return grid.mean(), grid.count


def jet_rgb(levels: np.ndarray) -> np.ndarray:
    """OpenCV's jet colours (RGB uint8) of uint8 levels, the heatmaps' colour scale."""
    return cv2.applyColorMap(levels, cv2.COLORMAP_JET)[..., ::-1]


def overlay(thumb: np.ndarray, prob: np.ndarray, covered: np.ndarray,
            alpha: float = 0.55, floor: float = 0.0) -> np.ndarray:
    """Colour the heatmap (jet) over the thumbnail where patches were scored and the
    probability is at least ``floor``."""
    prob = cv2.resize(prob, (thumb.shape[1], thumb.shape[0]), interpolation=cv2.INTER_LINEAR)
    covered = cv2.resize(covered.astype(np.uint8), (thumb.shape[1], thumb.shape[0]),
                         interpolation=cv2.INTER_NEAREST).astype(bool)
    colour = jet_rgb((prob * 255).astype(np.uint8))
    out = thumb.astype(np.float32)
    a = (alpha * (covered & (prob >= floor)))[..., None]
    return (out * (1 - a) + colour.astype(np.float32) * a).astype(np.uint8)


def stitch_to_zarr(path: str | Path, coords: np.ndarray, maps: Any, size0: float,
                   dimensions: tuple[int, int], downsample: float, overview_downsample: float,
                   band: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Write the averaged probability map to a zarr array, one band of rows at a time, and
    return ``stitch``'s (mean, count) on the coarser ``overview_downsample`` grid, from the
    same single read of the maps.

    Peak memory is a band (``band`` rows x slide width at ``downsample``), never the whole map.
    """
    from mixsup.storage.artefacts import new_array

    path = Path(path)
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    grid = _Grid(dimensions, size0, downsample)
    overview = _Grid(dimensions, size0, overview_downsample)
    overview.start(0, overview.h)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        arr = new_array(tmp / "a.zarr", shape=(grid.h, grid.w), dtype="float16",
                        chunks=(min(band, grid.h), min(band, grid.w)), fill_value=0)
        arr.attrs.update({"downsample": downsample, "level0_dimensions": list(dimensions),
                          "meaning": "mean patch probability; 0 where no patch was scored"})
        for top in range(0, grid.h, band):
            grid.start(top, min(grid.h, top + band))
            hit = grid.hits(coords)
            # each patch goes to the overview once: in its first band
            first = np.round(coords[hit, 1] / downsample) >= top
            band_maps = maps[hit] if len(hit) else []  # one read per band from a store
            for n, (j, small) in enumerate(zip(hit, band_maps, strict=True)):
                grid.paste(coords[j, 0], coords[j, 1], small)
                if first[n]:
                    overview.paste(coords[j, 0], coords[j, 1], small)
            arr[grid.top:grid.bottom] = grid.mean().astype(np.float16)
        if path.exists():
            shutil.rmtree(path)
        (tmp / "a.zarr").replace(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return overview.mean(), overview.count
