"""Write pyramidal, tiled, JPEG-compressed TIFFs with MPP that OpenSlide and tiffslide open.

Reduced levels are separate pages with ``subfiletype=1``: OpenSlide does not see SubIFDs.
Pixels come from a renderer called per tile, so a 40k x 40k slide never sits in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import tifffile

from mixsup.storage.atomic import atomic_path

# render(x0, y0, width, height, downsample) -> uint8 RGB (height, width, 3); x0, y0 in level 0
Renderer = Callable[[float, float, int, int, float], np.ndarray]
TILE = 256


def array_renderer(image: np.ndarray) -> Renderer:
    """A renderer over an in-memory level-0 image, with an area-averaged pyramid."""
    cache: dict[float, np.ndarray] = {1.0: image}

    def render(x0: float, y0: float, w: int, h: int, ds: float) -> np.ndarray:
        if ds not in cache:
            hh, ww = image.shape[:2]
            cache[ds] = cv2.resize(image, (max(1, round(ww / ds)), max(1, round(hh / ds))),
                                   interpolation=cv2.INTER_AREA)
        level = cache[ds]
        x, y = round(x0 / ds), round(y0 / ds)
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        crop = level[y:y + h, x:x + w]
        out[: crop.shape[0], : crop.shape[1]] = crop
        return out

    return render


def write_pyramid(path: str | Path, width: int, height: int, render: Renderer, mpp: float,
                  quality: int = 85, min_level_size: int = 512,
                  compression: str = "jpeg") -> None:
    """Write level 0 and halvings down to ``min_level_size`` px, atomically.

    ``compression="zlib"`` needs no imagecodecs (for machines without it)."""
    levels = [1]
    while max(width, height) / (levels[-1] * 2) >= min_level_size:
        levels.append(levels[-1] * 2)
    res = 1e4 / mpp  # pixels per centimetre
    with atomic_path(path, suffix=".tiff") as tmp, tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for i, ds in enumerate(levels):
            lw, lh = -(-width // ds), -(-height // ds)
            tif.write(
                _tiles(render, lw, lh, float(ds)),
                shape=(lh, lw, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression=compression,
                compressionargs={"level": quality} if compression == "jpeg" else None,
                resolution=(res / ds, res / ds),
                resolutionunit="CENTIMETER",
                subfiletype=0 if i == 0 else 1,
                description="mixsup synthetic slide" if i == 0 else None,
                metadata=None,
            )


def _tiles(render: Renderer, lw: int, lh: int, ds: float) -> Iterator[np.ndarray]:
    for ty in range(0, lh, TILE):
        for tx in range(0, lw, TILE):
            tile = render(tx * ds, ty * ds, TILE, TILE, ds)
            if tile.shape != (TILE, TILE, 3):
                raise ValueError(f"renderer returned {tile.shape}, expected {(TILE, TILE, 3)}")
            yield tile
