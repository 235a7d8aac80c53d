"""Patches per second from one process: a bare ``openslide.read_region`` loop (the baseline),
tiffslide, NKI-AI's fastslide (run inside ``.venv-bench``; `make bench-env`) and mixsup's
reader (``Slide`` with the ``tifftiles`` backend), in the same run, over the same coordinates
(row-major, 128 px overlap), plus mixsup's ``PatchReader`` through the E-step's DataLoader
(one stretch of patches per worker) with 0 and 2 worker processes (``--workers``).

    python benchmarks/bench_read.py [--patches N] [--workers 0,2] [--slide TIFF] [--whole-slide]

Sizes: 512 px at level 0 (the paper preset) and 128 px (the small preset, 1.0 um/px) on a
generated 20,000 px JPEG slide (or ``--slide``), then 512 px on the real SVS files in
../shared/data/slides when present. The last line is ``ratio_512 X.XX``: mixsup's reader over
bare ``read_region``, one process, 512 px, on the generated (or ``--slide``) slide.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import openslide
import torch
from cached_data import shapes_dataset

from mixsup.inference.patch_maps import make_loader, worker_batches
from mixsup.slides import open_slide
from mixsup.slides.patches import PatchReader, SlideSource

HERE = Path(__file__).resolve().parent
PEER_PYTHON = HERE.parent / ".venv-bench" / "bin" / "python"
SHARED_SLIDES = HERE.parent.parent / "shared" / "data" / "slides"


def grid(dims: tuple[int, int], size: int, n: int) -> list[tuple[int, int]]:
    stride = size - size // 4
    w, h = dims
    coords = [(x, y) for y in range(0, h - size + 1, stride)
              for x in range(0, w - size + 1, stride)]
    return coords[:n]


def rate(read, coords: list[tuple[int, int]]) -> float:
    start = time.perf_counter()
    for c in coords:
        read(c)
    return len(coords) / (time.perf_counter() - start)


def fastslide_rate(path: Path, coords: list[tuple[int, int]], size: int) -> float | None:
    if not PEER_PYTHON.is_file():
        return None
    out = subprocess.run([str(PEER_PYTHON), str(HERE / "peer_fastslide.py"), str(path),
                          str(size)], input=json.dumps(coords), capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  fastslide failed: {out.stderr.strip().splitlines()[-1:]}")
        return None
    return float(out.stdout.strip().splitlines()[-1])


def loader_rates(path: Path, coords: list[tuple[int, int]], size: int, mpp: float | None,
                 loaders: tuple[int, ...]) -> list[tuple[int, float]]:
    """(workers, patches/s) of PatchReader in the E-step's loader, one stretch of patches per
    worker as the E-step orders them."""
    refs = np.array([(0, x, y) for x, y in coords])
    out = []
    for workers in loaders:
        ds = PatchReader([SlideSource("s", str(path))], refs, size, mpp)
        loader = make_loader(ds, worker_batches([len(refs)], 32, workers), workers,
                             torch.device("cpu"))
        start = time.perf_counter()
        count = sum(len(b) for b in loader)
        out.append((workers, count / (time.perf_counter() - start)))
    return out


def compare(path: Path, size: int, n: int, loaders: tuple[int, ...]) -> float:
    """Prints one block; returns mixsup's reader over bare read_region."""
    import tiffslide

    bare_slide = openslide.OpenSlide(str(path))
    coords = grid(bare_slide.dimensions, size, n)
    print(f"\n{path.name}: {len(coords)} patches of {size} px at level 0")
    bare = rate(lambda c: np.asarray(bare_slide.read_region(c, 0, (size, size))), coords)
    print(f"  bare openslide.read_region   {bare:8.1f} patches/s  (1.00)")
    ts = tiffslide.TiffSlide(str(path))
    try:
        r = rate(lambda c: ts.read_region(c, 0, (size, size), as_array=True), coords)
        print(f"  tiffslide                    {r:8.1f} patches/s  ({r / bare:.2f})")
    except Exception as exc:  # tiffslide pins tifffile/zarr versions that may not be these
        print(f"  tiffslide                    failed: {type(exc).__name__}: {exc}")
    r = fastslide_rate(path, coords, size)
    print(f"  fastslide                    {r:8.1f} patches/s  ({r / bare:.2f})" if r else
          "  fastslide                    not installed (make bench-env)")
    ts.close()
    mine = open_slide(path, backend="tifftiles")
    ours = rate(lambda c: mine.read_region(c, 0, (size, size)), coords)
    print(f"  mixsup Slide (tifftiles)     {ours:8.1f} patches/s  ({ours / bare:.2f})")
    for workers, r in loader_rates(path, coords, size, mine.mpp, loaders) if loaders else ():
        print(f"  mixsup PatchReader, {workers} worker(s) {r:8.1f} patches/s  ({r / bare:.2f})")
    mine.close()
    bare_slide.close()
    return ours / bare


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=1000)
    ap.add_argument("--workers", default="0,2", help="PatchReader worker counts, e.g. 0,1,2,4")
    ap.add_argument("--slide", type=Path, help="a JPEG tiled TIFF instead of the 20k one")
    ap.add_argument("--whole-slide", action="store_true",
                    help="also PatchReader over every 128-px patch of the slide, per worker "
                    "count (runs long enough for worker start-up not to decide)")
    args = ap.parse_args()
    workers = tuple(int(w) for w in args.workers.split(","))
    big = args.slide or shapes_dataset("20k", 1, 20000, seed=5) / "slides" / "slide_000.tiff"
    ratio_512 = compare(big, 512, args.patches, loaders=workers)
    compare(big, 128, args.patches * 4, loaders=workers)
    if args.whole_slide:
        with open_slide(big) as s:
            coords, mpp = grid(s.dimensions, 128, 10**9), s.mpp
        rates = loader_rates(big, coords, 128, mpp, workers)
        base = rates[0][1]
        print(f"\n{big.name}: every 128-px patch ({len(coords)}), PatchReader in the loader")
        for w, r in rates:
            print(f"  {w} worker(s) {r:8.1f} patches/s  ({r / base:.2f} of {rates[0][0]})")
    for name in ("CMU-1-Small-Region.svs", "tcga-cr-7395-01a-01-ts1.svs"):
        if (SHARED_SLIDES / name).is_file():
            compare(SHARED_SLIDES / name, 512, args.patches, loaders=())
        else:
            print(f"\n{name}: skipped, ../shared/data/slides is not beside the checkout")
    print(f"\nratio_512 {ratio_512:.2f}")


if __name__ == "__main__":
    sys.exit(main())
