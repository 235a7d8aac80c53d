"""Geometry <-> pixel masks: scanline painting of polygons (with holes) and mask outlines."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry


def rasterize_geometry(geom: BaseGeometry, x0: float, y0: float, width: int, height: int,
                       downsample: float = 1.0) -> np.ndarray:
    """Boolean mask of ``geom`` (with holes) over a window, in the same frame as
    ``SlideAnnotations.rasterize``."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for poly in polygon_parts(geom):
        paint_polygon(mask, poly, x0, y0, downsample, 1)
    return mask.astype(bool)


def polygon_parts(geom: BaseGeometry) -> list[Polygon]:
    """The polygons of a Polygon or MultiPolygon (other parts are left out)."""
    if isinstance(geom, Polygon):
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]


def paint_polygon(mask: np.ndarray, poly: Polygon, x0: float, y0: float, ds: float,
                  value: int, cull: bool = True) -> None:
    """Set the pixels inside ``poly`` to ``value``; its holes keep what lay beneath.

    ``(x0, y0)`` is the mask's top-left in level-0 pixels; each mask pixel covers ``ds``
    level-0 pixels.
    """
    if poly.is_empty:
        return
    h, w = mask.shape
    minx, miny, maxx, maxy = poly.bounds
    c0, r0 = max(0, int(np.floor((minx - x0) / ds))), max(0, int(np.floor((miny - y0) / ds)))
    c1 = min(w, int(np.ceil((maxx - x0) / ds)) + 1)
    r1 = min(h, int(np.ceil((maxy - y0) / ds)) + 1)
    if c0 >= c1 or r0 >= r1:
        return
    inside = np.zeros((r1 - r0, c1 - c0), dtype=np.uint8)
    _fill(inside, poly.exterior.coords, x0, y0, ds, 1, (c0, r0), cull)
    for ring in poly.interiors:
        _fill(inside, ring.coords, x0, y0, ds, 0, (c0, r0), cull)
    mask[r0:r1, c0:c1][inside.astype(bool)] = value


def _fill(mask: np.ndarray, coords: Iterable, x0: float, y0: float, ds: float,
          value: int, offset: tuple[int, int] = (0, 0), cull: bool = True) -> None:
    """Set the pixels whose centres lie inside one ring (even-odd rule) to ``value``.

    ``mask`` covers the window from pixel ``offset`` (column, row) on. A scanline fill on
    pixel centres, so a 40-px square covers exactly 40x40 pixels at any offset (cv2.fillPoly
    also paints boundary pixels, which inflates every outline by a pixel). ``cull`` drops
    the edges that cross no row centre of the window or lie right of it before the fill;
    the kept edges go through the same arithmetic, so the pixels are the same.
    """
    pts = (np.asarray(coords, dtype=np.float64)[:, :2] - (x0, y0)) / ds - offset
    if len(pts) < 3:
        return
    h, w = mask.shape
    xa, ya = pts[:, 0], pts[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    if cull:
        # An edge counts on row r if exactly one end is <= r + 0.5; a crossing right of
        # column w - 1 lands past the cumulative sum's last column.
        keep = ((np.maximum(ya, yb) > 0.5) & (np.minimum(ya, yb) <= h - 0.5)
                & (np.minimum(xa, xb) <= w))
        xa, ya, xb, yb = xa[keep], ya[keep], xb[keep], yb[keep]
        if len(xa) == 0:
            return
    lo, hi = min(ya.min(), yb.min()), max(ya.max(), yb.max())
    r0, r1 = max(0, int(np.floor(lo))), min(h, int(np.ceil(hi)) + 1)
    chunk = max(1, 4_000_000 // len(xa))
    for start in range(r0, r1, chunk):
        rows = np.arange(start, min(r1, start + chunk))
        yc = rows[:, None] + 0.5
        ri, ei = np.nonzero((ya <= yc) != (yb <= yc))
        if len(ri) == 0:
            continue
        t = (yc[ri, 0] - ya[ei]) / (yb[ei] - ya[ei])
        col = np.clip(np.ceil(xa[ei] + t * (xb[ei] - xa[ei]) - 0.5), 0, w).astype(np.int64)
        counts = np.bincount(ri * (w + 1) + col, minlength=len(rows) * (w + 1))
        inside = (np.cumsum(counts.reshape(len(rows), w + 1), axis=1)[:, :w] & 1).astype(bool)
        mask[rows[0]: rows[-1] + 1][inside] = value


def mask_polygons(binary: np.ndarray, downsample: float) -> list[BaseGeometry]:
    """Outlines of a boolean mask, in the coordinates of a grid ``downsample`` times coarser."""
    contours, hierarchy = cv2.findContours(binary.astype(np.uint8), cv2.RETR_CCOMP,
                                           cv2.CHAIN_APPROX_SIMPLE)
    out: list[BaseGeometry] = []
    if hierarchy is None:
        return out
    parents = hierarchy[0][:, 3]
    for i, c in enumerate(contours):
        if parents[i] != -1:
            continue
        holes = [contours[int(j)].reshape(-1, 2) + 0.5 for j in np.nonzero(parents == i)[0]
                 if len(contours[int(j)]) >= 3]
        shell = c.reshape(-1, 2) + 0.5
        # Contours run through boundary pixel centres; grow by half a pixel to their edges.
        poly = shapely.make_valid(Polygon(shell, holes) if len(shell) >= 3 else Polygon())
        poly = poly.buffer(0.5, join_style="mitre") if not poly.is_empty else shapely.box(
            *(shell.min(axis=0) - 0.5), *(shell.max(axis=0) + 0.5))
        out.append(shapely.affinity.scale(poly, downsample, downsample, origin=(0, 0)))
    return out
