"""Morphological features of a slide's θ1 heatmap, in physical units (µm, µm²).

The clinical node classes are defined by physical size (itc ≤ 0.2 mm, micro ≤ 2 mm, macro
> 2 mm), so every size feature is converted with the heatmap's pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.measure import label, regionprops

THRESHOLDS = (0.5, 0.9)
REGION_STATS = ("area_um2", "perimeter_um", "eccentricity", "extent", "solidity")


@dataclass(frozen=True)
class Heatmap:
    prob: np.ndarray  # (h, w) mean probability, overlaps averaged
    tissue: np.ndarray  # (h, w) bool: pixels covered by scored tissue patches
    pixel_um: float  # side of one heatmap pixel in µm


def heatmap_features(hm: Heatmap) -> dict[str, float]:
    prob = np.where(hm.tissue, hm.prob, 0.0).astype(np.float32)
    px_area = hm.pixel_um**2
    tissue_px = int(hm.tissue.sum())
    f: dict[str, float] = {
        "max_prob": float(prob.max()) if prob.size else 0.0,
        "mean_prob_tissue": float(prob[hm.tissue].mean()) if tissue_px else 0.0,
        "tissue_area_um2": tissue_px * px_area,
    }
    for t in THRESHOLDS:
        mask = prob >= t
        tag = f"t{int(t * 100)}"
        f[f"n_pixels_{tag}"] = float(mask.sum())
        f[f"area_um2_{tag}"] = float(mask.sum()) * px_area
        f[f"tumor_tissue_ratio_{tag}"] = float(mask.sum()) / tissue_px if tissue_px else 0.0
        f.update(region_features(mask, hm.pixel_um, tag))
    return f


def region_features(mask: np.ndarray, pixel_um: float, tag: str) -> dict[str, float]:
    regions = regionprops(label(mask, connectivity=2))
    f: dict[str, float] = {f"n_regions_{tag}": float(len(regions))}
    if not regions:
        f[f"largest_area_um2_{tag}"] = 0.0
        f[f"largest_major_axis_um_{tag}"] = 0.0
        f[f"largest_extent_um_{tag}"] = 0.0
        for s in REGION_STATS:
            f[f"{s}_mean_{tag}"] = f[f"{s}_max_{tag}"] = 0.0
        return f
    values = {
        "area_um2": np.array([r.area * pixel_um**2 for r in regions]),
        "perimeter_um": np.array([r.perimeter * pixel_um for r in regions]),
        "eccentricity": np.array([r.eccentricity for r in regions]),
        "extent": np.array([r.extent for r in regions]),
        "solidity": np.array([r.solidity for r in regions]),
    }
    big = regions[int(np.argmax(values["area_um2"]))]
    f[f"largest_area_um2_{tag}"] = float(values["area_um2"].max())
    # A region one pixel wide still spans one pixel, hence the max with 1.
    f[f"largest_major_axis_um_{tag}"] = float(max(big.axis_major_length, 1.0) * pixel_um)
    rmin, cmin, rmax, cmax = big.bbox
    f[f"largest_extent_um_{tag}"] = float(max(rmax - rmin, cmax - cmin) * pixel_um)
    for s, v in values.items():
        f[f"{s}_mean_{tag}"] = float(v.mean())
        f[f"{s}_max_{tag}"] = float(v.max())
    return f


def rule_node_class(features: dict[str, float], tag: str = "t50") -> str:
    """Transparent baseline: the clinical size rule on the largest region's longest extent."""
    if features[f"n_regions_{tag}"] == 0:
        return "negative"
    size = max(features[f"largest_major_axis_um_{tag}"], features[f"largest_extent_um_{tag}"])
    if size <= 200.0:
        return "itc"
    return "micro" if size <= 2000.0 else "macro"
