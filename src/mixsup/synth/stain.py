"""Per-center colour shifts, so that centers differ the way scanners and stains do."""

from __future__ import annotations

import numpy as np

# Center A is the reference; others get a stain-like shift in optical density space.
_OD_SCALE = {"A": (1.0, 1.0, 1.0), "B": (0.75, 1.25, 0.9), "C": (1.2, 0.85, 1.15)}


def apply_center(rgb: np.ndarray, center: str) -> np.ndarray:
    scale = _OD_SCALE.get(center, (1.0, 1.0, 1.0))
    if scale == (1.0, 1.0, 1.0):
        return rgb
    od = -np.log((rgb.astype(np.float32) + 1.0) / 256.0)
    od *= np.asarray(scale, dtype=np.float32)
    return (256.0 * np.exp(-od) - 1.0).clip(0, 255).astype(np.uint8)
