"""A patch grid over tissue at a target MPP, stored per slide as npz (arrays) + JSON (metadata).

The JSON is written last and carries a key of everything the grid depends on, so a tiling
is reused only when it is complete and was made from the same slide with the same settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mixsup.config import MPP_RANGE, TilingConfig, TissueConfig
from mixsup.errors import MixsupError
from mixsup.slides.reader import Slide
from mixsup.slides.tissue import save_mask_preview, tissue_mask
from mixsup.storage.artefacts import load_arrays, save_arrays
from mixsup.storage.atomic import write_json
from mixsup.storage.user_files import finite, own_file, read_json

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


class NoTissueWarning(UserWarning):
    """A slide on which no tissue was found; it yields no patches."""


class UpsamplingWarning(UserWarning):
    """The tiling MPP is finer than the slide's level 0: patches are interpolated."""


@dataclass(frozen=True)
class TileSet:
    """Patch positions of one slide. ``coords`` are level-0 (x, y) of each patch's top-left."""

    slide_id: str
    slide_path: str
    coords: np.ndarray  # (N, 2) int64
    tissue: np.ndarray  # (N,) float32, tissue fraction of each patch
    mpp: float  # target resolution of a patch
    patch_size: int  # pixels at ``mpp``
    overlap: int
    slide_mpp: float
    dimensions: tuple[int, int]
    key: str

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def size0(self) -> float:
        """Patch side length in level-0 pixels."""
        return self.patch_size * self.mpp / self.slide_mpp

    def meta(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "slide_id": self.slide_id,
            "slide_path": self.slide_path,
            "n_patches": len(self),
            "mpp": self.mpp,
            "patch_size": self.patch_size,
            "overlap": self.overlap,
            "slide_mpp": self.slide_mpp,
            "dimensions": list(self.dimensions),
            "patch_size_level0": self.size0,
            "key": self.key,
        }


def tiling_key(slide: Slide, tiling: TilingConfig, tissue: TissueConfig) -> str:
    stat = Path(slide.path).stat()
    payload = {
        "v": FORMAT_VERSION,
        "path": str(Path(slide.path).resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "mpp": slide.mpp,
        "tiling": tiling.model_dump(),
        "tissue": tissue.model_dump(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def grid_coords(dimensions: tuple[int, int], size0: float, stride0: float) -> np.ndarray:
    """Top-left corners of every whole patch that fits inside the slide."""
    w, h = dimensions
    nx = int(np.floor((w - size0) / stride0)) + 1 if w >= size0 else 0
    ny = int(np.floor((h - size0) / stride0)) + 1 if h >= size0 else 0
    xs = np.floor(np.arange(nx) * stride0).astype(np.int64)
    ys = np.floor(np.arange(ny) * stride0).astype(np.int64)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def tissue_fractions(mask: np.ndarray, mask_ds: float, coords: np.ndarray,
                     size0: float) -> np.ndarray:
    """Fraction of each patch covered by ``mask``, via an integral image (O(1) per patch)."""
    if len(coords) == 0:
        return np.zeros(0, dtype=np.float32)
    integral = cv2.integral(mask.astype(np.uint8))
    h, w = mask.shape
    x0 = np.clip(np.floor(coords[:, 0] / mask_ds).astype(int), 0, w)
    y0 = np.clip(np.floor(coords[:, 1] / mask_ds).astype(int), 0, h)
    x1 = np.clip(np.ceil((coords[:, 0] + size0) / mask_ds).astype(int), 0, w)
    y1 = np.clip(np.ceil((coords[:, 1] + size0) / mask_ds).astype(int), 0, h)
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return (inside / area).astype(np.float32)


def tile_slide(slide: Slide, slide_id: str, tiling: TilingConfig, tissue: TissueConfig,
               out_dir: str | Path | None = None, preview: bool = True) -> TileSet:
    """Tile one slide; with ``out_dir``, reuse a stored tiling made with the same settings."""
    key = tiling_key(slide, tiling, tissue)
    if out_dir is not None:
        cached = load_tileset(out_dir, slide_id, key)
        if cached is not None:
            return cached

    if tiling.mpp < slide.mpp * 0.9:
        warnings.warn(f"{slide.path}: level 0 is {slide.mpp:.3g} um/px, coarser than "
                      f"tiling.mpp={tiling.mpp:g}; patches are upsampled "
                      f"{slide.mpp / tiling.mpp:.2g}x. Use settings that match the scan "
                      "(e.g. --preset small at 1.0 um/px) or check the slide's MPP (--mpp)",
                      UpsamplingWarning, stacklevel=2)
    thumb, thumb_mpp = slide.thumbnail(tissue.thumbnail_mpp, tissue.thumbnail_max_dim)
    mask = tissue_mask(thumb, tissue, thumb_mpp)
    mask_ds = thumb_mpp / slide.mpp
    size0 = tiling.patch_size * tiling.mpp / slide.mpp
    stride0 = tiling.stride * tiling.mpp / slide.mpp
    coords = grid_coords(slide.dimensions, size0, stride0)
    frac = tissue_fractions(mask, mask_ds, coords, size0)
    keep = frac >= max(tiling.min_tissue, 1e-6)
    tiles = TileSet(
        slide_id=slide_id,
        slide_path=slide.path,
        coords=coords[keep],
        tissue=frac[keep],
        mpp=tiling.mpp,
        patch_size=tiling.patch_size,
        overlap=tiling.overlap,
        slide_mpp=slide.mpp,
        dimensions=slide.dimensions,
        key=key,
    )
    if len(tiles) == 0:
        warnings.warn(f"{slide.path}: no tissue found (slide {slide_id!r}); it yields no patches. "
                      "Check the thumbnail preview, or lower tissue.min_saturation / "
                      "tiling.min_tissue", NoTissueWarning, stacklevel=2)
    if out_dir is not None:
        save_tileset(out_dir, tiles)
        if preview:
            boxes = np.column_stack([tiles.coords / mask_ds,
                                     np.full((len(tiles), 2), size0 / mask_ds)])
            save_mask_preview(thumb, mask, Path(out_dir) / f"{slide_id}_tissue.jpg", boxes)
    return tiles


def save_tileset(out_dir: str | Path, tiles: TileSet) -> None:
    out = Path(out_dir)
    save_arrays(out / f"{tiles.slide_id}.npz", coords=tiles.coords, tissue=tiles.tissue)
    write_json(out / f"{tiles.slide_id}.json", tiles.meta())


def load_tileset(out_dir: str | Path, slide_id: str, key: str | None = None) -> TileSet | None:
    """The stored tiling of ``slide_id``, or None when absent, incomplete, made differently or
    damaged (then it is made again, with a warning)."""
    meta_path = Path(out_dir) / f"{slide_id}.json"
    npz_path = Path(out_dir) / f"{slide_id}.npz"
    if not meta_path.is_file() or not npz_path.is_file():
        return None
    try:
        with own_file(meta_path, "stored tiling", fix=""):
            meta = read_json(meta_path, "stored tiling")
            if meta.get("format_version") != FORMAT_VERSION or (key and meta.get("key") != key):
                return None
            return _stored_tileset(slide_id, meta, load_arrays(npz_path))
    except MixsupError as exc:
        log.warning("%s; tiling %s again", exc, slide_id)
        return None


def _stored_tileset(slide_id: str, meta: dict[str, Any],
                    arrays: dict[str, np.ndarray]) -> TileSet:
    """A ``TileSet`` from ``save_tileset``'s files; ``ValueError`` (or ``KeyError``,
    ``TypeError``) where they do not fit together."""
    coords, tissue, n = arrays["coords"], arrays["tissue"], meta["n_patches"]
    if coords.shape != (n, 2) or tissue.shape != (n,) or coords.dtype.kind not in "iu":
        raise ValueError(f"arrays of shapes {coords.shape} and {tissue.shape} for {n} patches")
    width, height = meta["dimensions"]
    return TileSet(
        slide_id=slide_id,
        slide_path=str(meta["slide_path"]),
        coords=coords,
        tissue=tissue,
        mpp=finite(meta["mpp"], "mpp", low=MPP_RANGE[0], high=MPP_RANGE[1]),
        patch_size=int(meta["patch_size"]),
        overlap=int(meta["overlap"]),
        slide_mpp=finite(meta["slide_mpp"], "slide_mpp", low=MPP_RANGE[0], high=MPP_RANGE[1]),
        dimensions=(int(width), int(height)),
        key=str(meta["key"]),
    )
