"""Feature extraction (``mixsup features``: read patches + frozen encoder + store) against θ1's
E-step (read patches + segmenter + store maps) on the same patches, in the same run, each
repeated; prints patches/s and the ratio features / E-step with its range over the repeats.

    python benchmarks/bench_features.py [--preset small] [--data DIR] [--repeats 3]

Without --data it uses a generated shapes dataset under /tmp (made once).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch
from cached_data import shapes_dataset

from mixsup.config import load_config
from mixsup.dataset.tiles import slide_set
from mixsup.inference.features import extract_features
from mixsup.inference.settings import InferSettings
from mixsup.inference.stores import map_to_stores
from mixsup.labels.table import load_dataset
from mixsup.models.factory import build_segmenter
from mixsup.runtime.device import pick_device


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--data", default=None)
    ap.add_argument("--slides", type=int, default=8)
    ap.add_argument("--size", type=int, default=1536)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.preset)
    device = pick_device(cfg.runtime)
    data = load_dataset(args.data or shapes_dataset(f"features-{args.slides}-{args.size}",
                                                     args.slides, args.size, seed=11))
    with tempfile.TemporaryDirectory() as tmp:
        slides = slide_set(data, ("train", "val", "test"), cfg, Path(tmp) / "tiles", False,
                           False)
        which = list(range(len(slides.records)))
        n = sum(len(t) for t in slides.tilesets)
        theta1 = build_segmenter(cfg.model).to(device).eval()
        settings = InferSettings.from_config(cfg, device, Path(tmp) / "graphs")
        feats_s, estep_s = [], []
        for r in range(args.repeats + 1):  # the first pass of each exports its graph: warm-up
            out = Path(tmp) / "feats"
            start = time.perf_counter()
            extract_features(slides, which, cfg, cfg.abmil, out, device, progress=False)
            f = time.perf_counter() - start
            start = time.perf_counter()
            map_to_stores(theta1, slides, which, Path(tmp) / "maps", settings)
            e = time.perf_counter() - start
            # the graphs stay cached; the stores go, so that each pass computes them again
            for d in out.glob("*.zarr"):
                shutil.rmtree(d)
            shutil.rmtree(Path(tmp) / "maps", ignore_errors=True)
            if r:
                feats_s.append(f)
                estep_s.append(e)
    ratios = [e / f for f, e in zip(feats_s, estep_s, strict=True)]
    print(f"device={device} preset={args.preset} backend={settings.backend} "
          f"torch_threads={torch.get_num_threads()} patch={cfg.tiling.patch_size}px")
    print(f"patches: {n} over {len(which)} slides; encoder {cfg.abmil.encoder} (features) vs "
          f"{cfg.model.encoder} DLA-up (θ1)")
    print("features patches/s:   " + ", ".join(f"{n / s:.1f}" for s in feats_s))
    print("θ1 E-step patches/s:  " + ", ".join(f"{n / s:.1f}" for s in estep_s))
    print(f"ratio features / E-step throughput: {min(ratios):.2f}-{max(ratios):.2f} "
          f"(median {sorted(ratios)[len(ratios) // 2]:.2f})")


if __name__ == "__main__":
    main()
