"""Tissue masks on a thumbnail: Otsu on HSV saturation (the paper) or grey < 204 (authors' code),
or outlines drawn elsewhere (``GivenTissue``)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from mixsup.config import TissueConfig
from mixsup.storage.atomic import atomic_open


class GivenTissue(Protocol):
    """Tissue outlined elsewhere (``tissue.source=geojson``: ``dataset.tissue_geojson``),
    painted on the grid of the thumbnail that the tiler measures patches on."""

    @property
    def path(self) -> str:
        """Where the outlines come from."""

    @property
    def sha256(self) -> str:
        """Their content's hash: part of the tiling's key."""

    def paint(self, dimensions: tuple[int, int], shape: tuple[int, int],
              downsample: float) -> np.ndarray:
        """Boolean mask of ``shape`` (rows, columns) whose pixels are ``downsample`` level-0
        pixels wide, over a slide of ``dimensions`` (width, height) level-0 pixels."""


def tissue_mask(rgb: np.ndarray, cfg: TissueConfig, mpp: float) -> np.ndarray:
    """Boolean mask of tissue for an RGB thumbnail whose pixels are ``mpp`` microns wide."""
    if cfg.method == "otsu":
        sat = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
        otsu, _ = cv2.threshold(sat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        # On a blank slide Otsu splits noise; the floor keeps glass out.
        mask = sat > max(otsu, cfg.min_saturation)
        mask = _close(mask, cfg.closing_px)
        mask = _open(mask, cfg.opening_px)
    else:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        mask = _close(grey < cfg.grey_threshold, cfg.closing_px)
    if cfg.fill_holes:
        mask = fill_holes(mask)
    return _drop_small(mask, cfg.min_region_um2 / (mpp * mpp))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background regions not 4-connected to the border become tissue (as scipy's
    ``binary_fill_holes``, by one flood fill, which is faster)."""
    outside = np.pad(mask.astype(np.uint8), 1)
    cv2.floodFill(outside, None, (0, 0), 1, flags=4)
    return mask | (outside[1:-1, 1:-1] == 0)


def _kernel(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _close(mask: np.ndarray, size: int) -> np.ndarray:
    if size <= 1:
        return mask
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, _kernel(size)).astype(bool)


def _open(mask: np.ndarray, size: int) -> np.ndarray:
    if size <= 1:
        return mask
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _kernel(size)).astype(bool)


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    if min_px <= 1 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_px
    return keep[labels]


def save_mask_preview(rgb: np.ndarray, mask: np.ndarray, path: str | Path,
                      boxes: np.ndarray | None = None) -> None:
    """Thumbnail with the tissue outline in green and optional patch boxes (x, y, w, h) in blue."""
    canvas = rgb.copy()
    tint = canvas[mask].astype(np.float32) * 0.75 + np.array([0, 64, 0], np.float32)
    canvas[mask] = tint.clip(0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, (0, 160, 0), 1)
    if boxes is not None:
        for x, y, w, h in np.asarray(boxes, dtype=int):
            cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), (40, 80, 220), 1)
    # JPEG: previews are looked at, not measured, and a PNG's encoding is a large share of
    # tiling a slide. Encoded in memory and written by Python: cv2.imwrite crashes the process
    # on a path that is not valid UTF-8.
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise OSError(f"could not encode JPEG {path}")
    with atomic_open(path, "wb") as fh:
        fh.write(jpeg.tobytes())
