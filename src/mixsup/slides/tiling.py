"""A patch grid over tissue at a target MPP, stored per slide as npz (arrays) + JSON (metadata).

The JSON is written last and carries a key of everything the grid depends on, so a tiling
is reused only when it is complete and was made from the same slide with the same settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mixsup.config import MPP_RANGE, TilingConfig, TissueConfig
from mixsup.errors import MixsupError
from mixsup.slides.reader import Slide
from mixsup.slides.tissue import GivenTissue, save_mask_preview, tissue_mask
from mixsup.slides.tissue_qc import clean_tissue
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
    tissue_source: str = ""  # "otsu", "grey" or "geojson <file>"
    tissue_removed: dict[str, float] = field(default_factory=dict)  # QC check -> tissue share

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
            "tissue_source": self.tissue_source,
            "tissue_removed": self.tissue_removed,
        }


def tiling_key(slide: Slide, tiling: TilingConfig, tissue: TissueConfig,
               given: GivenTissue | None = None) -> str:
    stat = Path(slide.path).stat()
    payload: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "path": str(Path(slide.path).resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "mpp": slide.mpp,
        "tiling": tiling.model_dump(),
        "tissue": tissue.identity(),
    }
    if tissue.source == "geojson" and given is not None:
        payload["tissue_sha256"] = given.sha256
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


@dataclass(frozen=True)
class SlideTissue:
    """The tissue mask patches are measured on, over the slide's thumbnail."""

    thumb: np.ndarray
    mpp: float  # the thumbnail's
    mask: np.ndarray
    source: str  # "otsu", "grey" or "geojson <file>"
    removed: dict[str, float]  # QC check -> share of the detected tissue it removed


def slide_tissue(slide: Slide, tissue: TissueConfig,
                 given: GivenTissue | None = None) -> SlideTissue:
    """Detected tissue cleaned by the QC that ``tissue`` enables, or with
    ``tissue.source=geojson`` the ``given`` outlines."""
    thumb, thumb_mpp = slide.thumbnail(tissue.thumbnail_mpp, tissue.thumbnail_max_dim)
    if tissue.source == "geojson":
        if given is None:
            raise MixsupError("tissue.source=geojson, but no tissue outlines were given for "
                              "this slide", "add the slide's GeoJSON to slides.csv's `tissue` "
                              "column or to tissue.geojson_dir", slide.path)
        mask = given.paint(slide.dimensions, thumb.shape[:2], thumb_mpp / slide.mpp)
        return SlideTissue(thumb, thumb_mpp, mask, f"geojson {given.path}", {})
    mask, removed = clean_tissue(thumb, tissue_mask(thumb, tissue, thumb_mpp), tissue,
                                 thumb_mpp)
    return SlideTissue(thumb, thumb_mpp, mask, tissue.method, removed)


def tile_slide(slide: Slide, slide_id: str, tiling: TilingConfig, tissue: TissueConfig,
               out_dir: str | Path | None = None, preview: bool = True,
               given: GivenTissue | None = None) -> TileSet:
    """Tile one slide; with ``out_dir``, reuse a stored tiling made with the same settings.
    ``given``: the slide's tissue outlines, for ``tissue.source=geojson``."""
    key = tiling_key(slide, tiling, tissue, given)
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
    found = slide_tissue(slide, tissue, given)
    mask_ds = found.mpp / slide.mpp
    size0 = tiling.patch_size * tiling.mpp / slide.mpp
    stride0 = tiling.stride * tiling.mpp / slide.mpp
    coords = grid_coords(slide.dimensions, size0, stride0)
    frac = tissue_fractions(found.mask, mask_ds, coords, size0)
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
        tissue_source=found.source,
        tissue_removed=found.removed,
    )
    if len(tiles) == 0:
        fix = (f"its tissue outlines ({given.path})" if given is not None and
               tissue.source == "geojson" else "lower tissue.min_saturation / tiling.min_tissue")
        warnings.warn(f"{slide.path}: no tissue found (slide {slide_id!r}); it yields no patches. "
                      f"Check the thumbnail preview, or {fix}", NoTissueWarning, stacklevel=2)
    if out_dir is not None:
        save_tileset(out_dir, tiles)
        if preview:
            boxes = np.column_stack([tiles.coords / mask_ds,
                                     np.full((len(tiles), 2), size0 / mask_ds)])
            save_mask_preview(found.thumb, found.mask, Path(out_dir) / f"{slide_id}_tissue.jpg",
                              boxes)
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
    if not ((tissue >= 0) & (tissue <= 1)).all():  # NaN fails both
        raise ValueError("tissue fractions outside [0, 1]")
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
        tissue_source=str(meta.get("tissue_source", "")),
        tissue_removed=_shares(meta.get("tissue_removed", {})),
    )


def _shares(stored: dict[str, Any]) -> dict[str, float]:
    """QC check -> share of tissue removed, each a number in [0, 1] (a stored tiling made
    before the QC has none)."""
    return {str(k): finite(v, f"tissue_removed.{k}", low=0.0, high=1.0)
            for k, v in stored.items()}
