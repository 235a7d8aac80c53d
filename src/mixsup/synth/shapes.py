"""Procedural H&E-like slides: pink tissue with sparse nuclei, tumour with dense dark nuclei.

Pixels are a pure function of level-0 position, so any window at any downsample renders
consistently and a slide of any size streams to disk tile by tile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mixsup.labels.raster import rasterize_geometry
from mixsup.synth.layout import SlideLayout, plan_slides, write_dataset
from mixsup.synth.pyramid_tiff import Renderer
from mixsup.synth.stain import apply_center

GLASS = np.array([243, 242, 246], np.float32)
STROMA = np.array([234, 166, 204], np.float32)
NORMAL_NUCLEUS = np.array([128, 78, 168], np.float32)
TUMOR_CYTOPLASM = np.array([206, 136, 196], np.float32)
TUMOR_NUCLEUS = np.array([72, 34, 122], np.float32)


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic uniform [0, 1) per integer cell."""
    v = np.sin(ix * 12.9898 + iy * 78.233 + seed * 0.61803) * 43758.5453
    return v - np.floor(v)


def _nuclei(x: np.ndarray, y: np.ndarray, cell: float, density: float, radius: float,
            seed: int) -> np.ndarray:
    ix, iy = np.floor(x / cell), np.floor(y / cell)
    present = _hash(ix, iy, seed) < density
    jx = (_hash(ix, iy, seed + 1) - 0.5) * cell * 0.4
    jy = (_hash(ix, iy, seed + 2) - 0.5) * cell * 0.4
    dx = x - (ix + 0.5) * cell - jx
    dy = y - (iy + 0.5) * cell - jy
    return present & (dx * dx + dy * dy < radius * radius)


def shapes_renderer(lay: SlideLayout) -> Renderer:
    def render(x0: float, y0: float, w: int, h: int, ds: float) -> np.ndarray:
        xs = x0 + (np.arange(w, dtype=np.float32) + 0.5) * ds
        ys = y0 + (np.arange(h, dtype=np.float32) + 0.5) * ds
        x, y = np.meshgrid(xs, ys)
        tissue = rasterize_geometry(lay.tissue, x0, y0, w, h, ds)
        tumor = rasterize_geometry(lay.tumor, x0, y0, w, h, ds) & tissue
        img = np.broadcast_to(GLASS, (h, w, 3)).copy()
        img[tissue] = STROMA
        img[tumor] = TUMOR_CYTOPLASM
        normal_n = _nuclei(x, y, 14.0, 0.3, 3.0, lay.seed) & tissue & ~tumor
        tumor_n = _nuclei(x, y, 11.0, 0.75, 4.5, lay.seed + 7) & tumor
        img[normal_n] = NORMAL_NUCLEUS
        img[tumor_n] = TUMOR_NUCLEUS
        fibres = 6.0 * np.sin(x * 0.07 + 2.0 * np.sin(y * 0.013)) * tissue
        noise = (_hash(np.floor(x), np.floor(y), lay.seed + 3) - 0.5) * 14.0
        img += (fibres + noise)[..., None]
        return apply_center(img.clip(0, 255).astype(np.uint8), lay.center)

    return render


def make_shapes(out: str | Path, n_slides: int = 20, size: int = 1280, mpp: float = 1.0,
                seed: int = 0, annotated_fraction: float = 0.6, progress: bool = True,
                compression: str = "jpeg", truth_dir: str | Path | None = None,
                splits: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Path:
    layouts = plan_slides(n_slides, size, size, seed=seed, annotated_fraction=annotated_fraction,
                          splits=splits)
    return write_dataset(out, layouts, mpp, shapes_renderer, progress=progress,
                         compression=compression, truth_dir=truth_dir)
