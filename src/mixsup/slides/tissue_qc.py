"""Light artefact QC of a detected tissue mask: pen ink and blurred regions, on the thumbnail.

Each check is a pure function of the thumbnail; :func:`clean_tissue` takes the flagged pixels
out of the tissue and says which share of the tissue each check removed. Serious QC (folds,
bubbles, learned artefact classes) is GrandQC, HistoQC or TRIDENT, read through
``tissue.source=geojson``.
"""

from __future__ import annotations

import cv2
import numpy as np

from mixsup.config import TissueConfig


def pen_mask(rgb: np.ndarray, min_saturation: int, hue_deg: tuple[float, float],
             max_value: int) -> np.ndarray:
    """Pixels of pen ink: saturated with a hue in ``hue_deg`` (blue, green: H&E has neither),
    or as dark as black ink (HSV value at most ``max_value``); specks narrower than 3 pixels
    are not strokes."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    hue = hsv[..., 0].astype(np.float32) * (360.0 / 256.0)
    coloured = (hsv[..., 1] >= min_saturation) & (hue >= hue_deg[0]) & (hue <= hue_deg[1])
    ink = (coloured | (hsv[..., 2] <= max_value)).astype(np.uint8)
    # A noisy haematoxylin pixel can reach an ink hue; a stroke is many pixels wide.
    return cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)


def blur_mask(rgb: np.ndarray, max_variance: float, window_px: int) -> np.ndarray:
    """Pixels whose neighbourhood (``window_px`` wide) has a Laplacian variance below
    ``max_variance``: no texture at this resolution."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    size = (window_px, window_px)
    mean = cv2.boxFilter(lap, -1, size, borderType=cv2.BORDER_REFLECT)
    mean_sq = cv2.boxFilter(lap * lap, -1, size, borderType=cv2.BORDER_REFLECT)
    return (mean_sq - mean * mean) < max_variance


def clean_tissue(rgb: np.ndarray, mask: np.ndarray, cfg: TissueConfig,
                 mpp: float) -> tuple[np.ndarray, dict[str, float]]:
    """``mask`` without the pen ink and blurred regions that ``cfg`` asks to remove, and the
    share of the tissue each enabled check removed (a pixel both checks flag counts in both)."""
    flagged: dict[str, np.ndarray] = {}
    if cfg.remove_pen:
        flagged["pen"] = pen_mask(rgb, cfg.pen_min_saturation,
                                  (cfg.pen_hue_min, cfg.pen_hue_max), cfg.pen_max_value)
    if cfg.remove_blur:
        flagged["blur"] = blur_mask(rgb, cfg.blur_max_variance,
                                    window_px(cfg.blur_window_um, mpp))
    total = max(int(mask.sum()), 1)
    removed = {name: round(int((mask & bad).sum()) / total, 6) for name, bad in flagged.items()}
    for bad in flagged.values():
        mask = mask & ~bad
    return mask, removed


def window_px(window_um: float, mpp: float) -> int:
    """An odd window of at least 3 pixels spanning about ``window_um`` microns."""
    return max(3, round(window_um / mpp) | 1)


def describe_removed(removed: dict[str, float]) -> str:
    """``{"pen": 0.012}`` as "pen 1.20%" (of the detected tissue)."""
    return ", ".join(f"{name} {share:.2%}" for name, share in removed.items())
