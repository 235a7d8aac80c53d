"""Patch reading through mixsup's dataset (DataLoader, slides opened lazily per worker) vs a
bare ``openslide.read_region`` loop over the same coordinates, in the same run.

    python benchmarks/bench_read.py [--slides N] [--size PX]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import openslide
from cached_data import shapes_dataset
from torch.utils.data import DataLoader

from mixsup.config import load_config
from mixsup.labels.table import load_dataset
from mixsup.patches import PatchReader
from mixsup.train.context import slide_set


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slides", type=int, default=4)
    ap.add_argument("--size", type=int, default=4096)
    args = ap.parse_args()
    data_dir = shapes_dataset(f"read-{args.slides}-{args.size}", args.slides, args.size, seed=5)
    cfg = load_config("tiny")
    with tempfile.TemporaryDirectory() as tmp:
        slides = slide_set(load_dataset(data_dir), ("train", "val", "test"), cfg,
                           Path(tmp) / "tiles", False, False)
    refs = np.concatenate([np.column_stack([np.full(len(t), i), t.coords])
                           for i, t in enumerate(slides.tilesets)])
    p, mpp = cfg.tiling.patch_size, cfg.tiling.mpp
    size0 = round(slides.tilesets[0].size0)

    handles = [openslide.OpenSlide(s.path) for s in slides.sources]
    start = time.perf_counter()
    for s, x, y in refs:
        np.asarray(handles[s].read_region((int(x), int(y)), 0, (size0, size0)))[..., :3]
    bare = len(refs) / (time.perf_counter() - start)

    print(f"{len(refs)} patches of {p} px at {mpp} um/px from {len(slides.records)} slides")
    print(f"bare openslide.read_region loop (1 process): {bare:8.1f} patches/s")
    for workers in (0, 2):
        ds = PatchReader(slides.sources, refs, p, mpp)
        loader = DataLoader(ds, batch_size=64, num_workers=workers,
                            prefetch_factor=4 if workers else None)
        start = time.perf_counter()
        n = sum(len(b) for b in loader)
        rate = n / (time.perf_counter() - start)
        print(f"mixsup PatchReader, {workers} worker(s):          {rate:8.1f} patches/s "
              f"(ratio {rate / bare:.2f})")


if __name__ == "__main__":
    main()
