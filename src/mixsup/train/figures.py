"""Per-slide figures of θ1's heatmap after the initialisation and after every round (Fig. 7)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from mixsup.inference.map_store import StoredMaps
from mixsup.render.heatmap import overlay, stitch
from mixsup.render.plotting import save_png
from mixsup.slides.reader import Slide
from mixsup.slides.tiling import TileSet


def pick_figure_slides(labels: dict[int, int], n_each: int = 2) -> list[int]:
    pos = [i for i, y in labels.items() if y == 1][:n_each]
    neg = [i for i, y in labels.items() if y == 0][:n_each]
    return pos + neg


def round_figure(path: Path, slide: Slide, tiles: TileSet, title: str,
                 per_round: list[tuple[str, StoredMaps]], thumb_mpp: float = 8.0) -> None:
    thumb, mpp = slide.thumbnail(thumb_mpp)
    ds = mpp / slide.mpp
    panels = [("slide", thumb)]
    for name, maps in per_round:
        prob, count = stitch(tiles.coords, maps.maps, tiles.size0, slide.dimensions, ds)
        panels.append((name, overlay(thumb, prob, count > 0)))
    fig = Figure(figsize=(3.2 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, img) in zip(axes[0], panels, strict=True):
        ax.imshow(img)
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_png(fig, path, dpi=90)


def stage1_figures(out_dir: Path, slides, labels: dict[int, int],
                   rounds: list[tuple[int, dict[int, StoredMaps]]]) -> list[Path]:
    paths = []
    for i in pick_figure_slides(labels):
        rec = slides.records[i]
        src = slides.sources[i]
        with Slide(src.path, src.backend, src.mpp) as slide:
            per_round = [(f"round {r}" if r else "init (round 0)", maps[i])
                         for r, maps in rounds if i in maps]
            path = out_dir / f"{rec.slide_id}.png"
            round_figure(path, slide, slides.tilesets[i],
                         f"{rec.slide_id} (label {labels[i]})", per_round)
            paths.append(path)
    return paths
