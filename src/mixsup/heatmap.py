"""Stitch per-patch probability maps into a slide-level heatmap; overlaps are averaged."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def stitch(coords: np.ndarray, maps: Any, size0: float, dimensions: tuple[int, int],
           downsample: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean probability, coverage count) on a grid of ``downsample`` level-0 px per cell.

    ``maps`` is (N, m, m) array-like: an ndarray or a store's ``LazyMaps`` (read in chunks).

    Overlapping patches are averaged, never overwritten by the last one.
    """
    w, h = (max(1, int(np.ceil(d / downsample))) for d in dimensions)
    total = np.zeros((h, w), np.float32)
    count = np.zeros((h, w), np.float32)
    side = max(1, round(size0 / downsample))
    for (x, y), m in zip(np.asarray(coords), maps, strict=True):
        cx, cy = round(float(x) / downsample), round(float(y) / downsample)
        tile = cv2.resize(np.asarray(m, np.float32), (side, side),
                          interpolation=cv2.INTER_LINEAR)
        x1, y1 = min(w, cx + side), min(h, cy + side)
        if x1 <= cx or y1 <= cy:
            continue
        total[cy:y1, cx:x1] += tile[: y1 - cy, : x1 - cx]
        count[cy:y1, cx:x1] += 1
    prob = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return prob, count


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


def stitch_to_zarr(path, coords: np.ndarray, maps: Any, size0: float,
                   dimensions: tuple[int, int], downsample: float, band: int = 1024) -> None:
    """Write the averaged probability map to a zarr array, one band of rows at a time.

    Peak memory is a band (``band`` rows x slide width at ``downsample``), never the whole map.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from mixsup.artefacts import new_array

    path = Path(path)
    w, h = (max(1, int(np.ceil(d / downsample))) for d in dimensions)
    side = max(1, round(size0 / downsample))
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    cells = np.round(coords / downsample).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        arr = new_array(tmp / "a.zarr", shape=(h, w), dtype="float16",
                        chunks=(min(band, h), min(band, w)), fill_value=0)
        arr.attrs.update({"downsample": downsample, "level0_dimensions": list(dimensions),
                          "meaning": "mean patch probability; 0 where no patch was scored"})
        for top in range(0, h, band):
            bottom = min(h, top + band)
            total = np.zeros((bottom - top, w), np.float32)
            count = np.zeros_like(total)
            hit = np.nonzero((cells[:, 1] < bottom) & (cells[:, 1] + side > top))[0]
            band_maps = maps[hit] if len(hit) else []  # one read per band from a store
            for j, small in zip(hit, band_maps, strict=True):
                cx, cy = cells[j]
                tile = cv2.resize(np.asarray(small, np.float32), (side, side),
                                  interpolation=cv2.INTER_LINEAR)
                y0, y1 = max(cy, top), min(cy + side, bottom)
                x0, x1 = max(cx, 0), min(cx + side, w)
                if y1 <= y0 or x1 <= x0:
                    continue
                total[y0 - top:y1 - top, x0:x1] += tile[y0 - cy:y1 - cy, x0 - cx:x1 - cx]
                count[y0 - top:y1 - top, x0:x1] += 1
            arr[top:bottom] = np.divide(total, count, out=np.zeros_like(total),
                                        where=count > 0).astype(np.float16)
        if path.exists():
            shutil.rmtree(path)
        (tmp / "a.zarr").replace(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
