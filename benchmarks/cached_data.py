"""Shared by the benchmarks: generated datasets, made once and kept in the temp folder between
runs."""

from __future__ import annotations

import tempfile
from pathlib import Path


def shapes_dataset(name: str, n_slides: int, size: int, seed: int) -> Path:
    """``$TMPDIR/mixsup-bench-<name>``: a shapes dataset, generated on first use."""
    root = Path(tempfile.gettempdir()) / f"mixsup-bench-{name}"
    if not (root / "slides.csv").is_file():
        from mixsup.synth.shapes import make_shapes

        print(f"generating {n_slides} shapes slide(s) of {size}x{size} px in {root}...",
              flush=True)
        make_shapes(root, n_slides=n_slides, size=size, seed=seed, progress=False)
    return root
