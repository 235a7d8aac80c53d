"""Tiling time per slide (tissue mask + grid + store), against reading the thumbnail alone.

The thumbnail read is the I/O that any tiler must do, so the ratio shows what mask, grid and
storage add on top. Usage:

    python benchmarks/bench_tiling.py [SLIDE ...]

Without arguments it uses ../shared/data/slides/CMU-1-Small-Region.svs and a generated
20,000 x 20,000 px shapes slide (made once under /tmp).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from cached_data import shapes_dataset

from mixsup.config import load_config
from mixsup.slides import open_slide, tile_slide

REPO = Path(__file__).resolve().parents[1]


def default_slides() -> list[Path]:
    slides = []
    cmu = REPO.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
    if cmu.is_file():
        slides.append(cmu)
    slides.append(shapes_dataset("20k", 1, 20000, seed=5) / "slides" / "slide_000.tiff")
    return slides


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str]) -> None:
    slides = [Path(a) for a in argv] or default_slides()
    print(f"{'slide':<34} {'size':>13} {'preset':>6} {'patches':>8} {'thumb s':>8} "
          f"{'tiling s':>9} {'ratio':>6}")
    for path in slides:
        for preset in ("paper", "small"):
            cfg = load_config(preset)
            slide = open_slide(path)
            thumb_s = best_of(3, lambda s=slide, c=cfg: s.thumbnail(c.tissue.thumbnail_mpp))
            n = 0

            def tile(s=slide, c=cfg) -> None:
                nonlocal n
                with tempfile.TemporaryDirectory() as out:
                    n = len(tile_slide(s, "bench", c.tiling, c.tissue, out, preview=True))

            tile_s = best_of(3, tile)
            w, h = slide.dimensions
            print(f"{path.name[:34]:<34} {f'{w}x{h}':>13} {preset:>6} {n:>8} {thumb_s:>8.3f} "
                  f"{tile_s:>9.3f} {tile_s / thumb_s:>6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
