"""Per-slide probability-map stores (zarr, compressed) written atomically as directories."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from mixsup.infer import PatchMaps

STORE_VERSION = 1


def write_maps(path: str | Path, coords: np.ndarray, maps: PatchMaps,
               attrs: dict[str, Any]) -> None:
    """Write a slide's maps to ``path`` (a .zarr directory); readers never see a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        group = zarr.open_group(str(tmp / "g.zarr"), mode="w")
        n, m = maps.maps.shape[0], maps.maps.shape[-1]
        group.create_array("coords", data=np.asarray(coords, np.int64))
        group.create_array("max_prob", data=maps.max_prob)
        group.create_array("prob", data=maps.maps, chunks=(max(1, min(n, 256)), m, m))
        group.attrs.update({"version": STORE_VERSION, "n_patches": int(n), **attrs})
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp / "g.zarr", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_maps(path: str | Path, expect_key: str | None = None
              ) -> tuple[np.ndarray, PatchMaps, dict[str, Any]] | None:
    """(coords, maps, attrs), or None when the store is absent, stale or unreadable."""
    path = Path(path)
    if not path.is_dir():
        return None
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        if attrs.get("version") != STORE_VERSION:
            return None
        if expect_key is not None and attrs.get("key") != expect_key:
            return None
        coords = group["coords"][:]
        maps = PatchMaps(group["prob"][:], group["max_prob"][:])
    except Exception:
        return None
    if len(coords) != attrs.get("n_patches"):
        return None
    return coords, maps, attrs
