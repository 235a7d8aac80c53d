"""Figures without pyplot: a bare ``Figure`` needs no global backend switch and leaves nothing
open when drawing fails; ``save_png`` writes atomically."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from mixsup.storage.atomic import atomic_path


def save_png(fig: Figure, path: str | Path, dpi: int, compress_level: int = 6) -> None:
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", pil_kwargs={"compress_level": compress_level})
