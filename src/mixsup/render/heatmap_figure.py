"""The heatmap PNG of a predicted slide: probabilities over the tissue, transparent below a
floor so that the tissue stays visible, the ranked top-K boxes, a colour bar and a scale bar."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mixsup.render.heatmap import FLOOR, jet_rgb, overlay
from mixsup.render.plotting import save_png

LONG_SIDE = (1000, 2000)  # the PNG's longer side in pixels, when the slide has that many


def png_mpp(slide_mpp: float, dimensions: tuple[int, int], preferred_mpp: float) -> float:
    """The resolution of the heatmap PNG: ``preferred_mpp`` when that gives a longer side
    within ``LONG_SIDE``, else the nearest bound, never finer than the slide itself."""
    long_um = max(dimensions) * slide_mpp
    lo, hi = LONG_SIDE
    return max(slide_mpp, min(max(preferred_mpp, long_um / hi), long_um / lo))


def scale_bar_um(width_um: float) -> float:
    """A round length (1, 2 or 5 x 10^n um) of about a fifth of the image width."""
    target = width_um / 5
    base = 10 ** np.floor(np.log10(target))
    return float(max(m * base for m in (1, 2, 5) if m * base <= target))


def heatmap_png(path: Path, thumb: np.ndarray, prob: np.ndarray, covered: np.ndarray,
                boxes: Sequence[tuple[int, float, float, float]], mpp: float,
                title: str = "") -> None:
    """``boxes``: (rank, x, y, side) in thumbnail pixels; ``mpp``: microns per thumbnail pixel."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    img = overlay(thumb, prob, covered, floor=FLOOR)
    h, w = img.shape[:2]
    dpi = 100
    fig = Figure(figsize=((w + 110) / dpi, (h + 40) / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, w / (w + 110), h / (h + 40)))
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    lw = max(1.0, max(w, h) / 800)
    for rank, x, y, side in boxes:
        ax.add_patch(Rectangle((x, y), side, side, fill=False, edgecolor="black", lw=lw))
        ax.text(x + 2, y + 2, str(rank), color="white", fontsize=8, va="top", ha="left",
                bbox={"facecolor": "black", "alpha": 0.7, "pad": 1, "linewidth": 0})
    bar = scale_bar_um(w * mpp)
    label = f"{bar / 1000:g} mm" if bar >= 1000 else f"{bar:g} µm"
    ax.add_artist(AnchoredSizeBar(ax.transData, bar / mpp, label, "lower left", pad=0.4,
                                  color="black", frameon=True, size_vertical=max(2, h / 200)))
    cax = fig.add_axes((w / (w + 110) + 0.02, 0.1, 12 / (w + 110), 0.8))
    # the colours ``overlay`` paints with (OpenCV's jet, which differs from matplotlib's)
    lut = jet_rgb(np.arange(256, dtype=np.uint8)[:, None])[:, 0]
    fig.colorbar(ScalarMappable(Normalize(0, 1), ListedColormap(lut / 255.0)),
                 cax=cax,
                 label=f"tumour probability (not painted below {FLOOR:g})")
    if title:
        fig.text(0.01, 0.995, title, va="top", fontsize=9)
    # zlib level 1: a quarter of the default level's encoding time, files about 30% larger
    save_png(fig, path, dpi=dpi, compress_level=1)
