"""Peak RSS of the E-step over N and 2N slides: maps streamed into zarr stores (mixsup's
``map_to_stores``) vs every slide's maps held in RAM until the round ends (the baseline, as
the E-step worked before streaming). Each measurement runs in a fresh process.

    python benchmarks/bench_estep_rss.py [--slides N]

The slides are one generated 20,000^2 shapes slide listed N or 2N times, tiled with the small
preset (about 10,000 patches each) and stored at full map resolution (128^2 float16 per patch,
32 KB, as the paper preset stores), scored by a 1x1-convolution model so that reading and
storing dominate.
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from cached_data import shapes_dataset

from mixsup.config import load_config
from mixsup.dataset.tiles import slide_set
from mixsup.inference.patch_maps import map_slides
from mixsup.inference.settings import InferSettings
from mixsup.inference.stores import map_to_stores
from mixsup.labels.table import load_dataset

OVERRIDES = ["stage1.map_downsample=1", "runtime.num_workers=0", "stage1.infer_batch_size=64"]




def _dataset(root: Path, n: int) -> Path:
    """``n`` slides.csv rows naming the same slide file."""
    src = shapes_dataset("20k", 1, 20000, seed=5) / "slides" / "slide_000.tiff"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "slides.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide_id", "path", "label", "split"])
        for i in range(n):
            w.writerow([f"s{i:02d}", str(src), i % 2, "train"])
    return root


def child(mode: str, n: int) -> None:
    cfg = load_config("tiny", overrides=OVERRIDES)
    device = torch.device("cpu")
    model = torch.nn.Conv2d(3, 1, 1).eval()
    with tempfile.TemporaryDirectory() as tmp:
        data = load_dataset(_dataset(Path(tmp) / "data", n))
        slides = slide_set(data, ("train",), cfg, Path(tmp) / "tiles", False, False)
        which = list(range(len(slides.records)))
        settings = InferSettings.from_config(cfg, device)
        start = time.perf_counter()
        if mode == "stream":
            held = map_to_stores(model, slides, which, Path(tmp) / "maps", settings).maps
        else:
            t = slides.tilesets[0]
            jobs = [(i, slides.tilesets[i].coords) for i in which]
            held = dict(map_slides(model, slides.sources, jobs, t.patch_size, t.mpp, settings))
        secs = time.perf_counter() - start
        patches = sum(len(t) for t in slides.tilesets)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(held)} {patches} {secs:.1f} {peak:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=2)
    ap.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    shapes_dataset("20k", 1, 20000, seed=5)  # generate once, outside the measurements
    peaks = {}
    print(f"{'mode':<8} {'slides':>6} {'patches':>8} {'seconds':>8} {'peak RSS MB':>12}")
    for mode in ("memory", "stream"):
        for n in (args.slides, 2 * args.slides):
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(n)],
                                 capture_output=True, text=True, check=True).stdout.split()
            done, patches, secs, peak = int(out[-4]), int(out[-3]), out[-2], float(out[-1])
            assert done == n
            peaks[mode, n] = peak
            print(f"{mode:<8} {n:>6} {patches:>8} {secs:>8} {peak:>12.0f}", flush=True)
    lo, hi = args.slides, 2 * args.slides
    print(f"RSS growth {lo} -> {hi} slides: in RAM {peaks['memory', hi] / peaks['memory', lo]:.2f}"
          f"x, streamed {peaks['stream', hi] / peaks['stream', lo]:.2f}x; streamed / in RAM at "
          f"{hi} slides: {peaks['stream', hi] / peaks['memory', hi]:.2f}")


if __name__ == "__main__":
    main()
