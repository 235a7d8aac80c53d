"""Tiling time per slide (tissue mask + grid + store), against reading the thumbnail alone
and against the peer tiler hs2p on the same slides and settings.

The thumbnail read is the I/O that any tiler must do, so that ratio shows what mask, grid and
storage add on top. hs2p runs in its own environment (``make bench-env`` makes
``.venv-bench``; ``--peer-python`` points elsewhere), so it never becomes a mixsup dependency.
Usage:

    python benchmarks/bench_tiling.py [--peer-python PY] [SLIDE ...]

Without arguments it uses ../shared/data/slides/CMU-1-Small-Region.svs and a generated
20,000 x 20,000 px shapes slide (made once under /tmp).
"""

from __future__ import annotations

import argparse
import json
import subprocess
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


def peer_seconds(python: Path, path: Path, cfg) -> tuple[float, int] | str | None:
    """hs2p's best-of-3 seconds and patch count for one slide, its refusal message, or None
    without the peer environment."""
    if not python.is_file():
        return None
    t = cfg.tiling
    cmd = [str(python), str(REPO / "benchmarks" / "peer_hs2p.py"), "--mpp", str(t.mpp),
           "--size", str(t.patch_size), "--overlap", str(t.overlap),
           "--seg-mpp", str(cfg.tissue.thumbnail_mpp), str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    return row["error"] if "error" in row else (row["seconds"], row["patches"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("slides", nargs="*", type=Path)
    ap.add_argument("--peer-python", type=Path, default=REPO / ".venv-bench" / "bin" / "python")
    args = ap.parse_args()
    slides = args.slides or default_slides()
    if not args.peer_python.is_file():
        print(f"no peer environment at {args.peer_python}: run `make bench-env` for the hs2p "
              "column")
    print("tiling s: mask + grid + store + preview PNG; bare s: without the preview (what hs2p "
          "does); /thumb = tiling / thumbnail read; /hs2p = bare / hs2p (< 1: mixsup faster)")
    print(f"{'slide':<24} {'size':>11} {'preset':>6} {'patches':>7} {'thumb s':>7} "
          f"{'tiling s':>8} {'/thumb':>6} {'bare s':>8} {'hs2p s':>7} {'hs2p n':>7} "
          f"{'/hs2p':>6}")
    for path in slides:
        for preset in ("paper", "small"):
            cfg = load_config(preset)
            slide = open_slide(path)
            thumb_s = best_of(3, lambda s=slide, c=cfg: s.thumbnail(c.tissue.thumbnail_mpp))
            n = 0

            def tile(s=slide, c=cfg, preview=True) -> None:
                nonlocal n
                with tempfile.TemporaryDirectory() as out:
                    n = len(tile_slide(s, "bench", c.tiling, c.tissue, out, preview=preview))

            tile_s = best_of(3, tile)
            bare_s = best_of(3, lambda: tile(preview=False))  # hs2p writes no preview either
            w, h = slide.dimensions
            peer = peer_seconds(args.peer_python, path, cfg)
            if isinstance(peer, tuple):
                peer_cols = f"{peer[0]:>7.3f} {peer[1]:>7} {bare_s / peer[0]:>6.2f}"
            else:
                peer_cols = f"{'-':>7} {'-':>7} {'-':>6}"
            print(f"{path.name[:24]:<24} {f'{w}x{h}':>11} {preset:>6} {n:>7} {thumb_s:>7.3f} "
                  f"{tile_s:>8.3f} {tile_s / thumb_s:>6.2f} {bare_s:>8.3f} {peer_cols}",
                  flush=True)
            if isinstance(peer, str):
                print(f"  hs2p refused: {peer}")


if __name__ == "__main__":
    main()
