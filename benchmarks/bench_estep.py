"""E-step throughput (read patches + θ1 + store maps in zarr) vs model-only forward on
preloaded tensors of the same size and count, measured in the same run: the E-step on
PyTorch and on the configured backend (``runtime.backend``, auto: OpenVINO on a CPU), against
PyTorch's model-only throughput.

    python benchmarks/bench_estep.py [--preset small|paper] [--slides N] [--workers W]

Uses a generated shapes dataset under /tmp (made once).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from cached_data import shapes_dataset

from mixsup.config import load_config
from mixsup.dataset.tiles import slide_set
from mixsup.inference.cpu_backend import cached_graph, inference_model
from mixsup.inference.settings import InferSettings
from mixsup.inference.stores import map_to_stores
from mixsup.labels.table import load_dataset
from mixsup.models.factory import build_segmenter
from mixsup.runtime.device import pick_device, to_input


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--slides", type=int, default=6)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    overrides = [] if args.workers is None else [f"runtime.num_workers={args.workers}"]
    cfg = load_config(args.preset, overrides=overrides)
    device = pick_device(cfg.runtime)
    data = load_dataset(shapes_dataset(f"estep-{args.slides}-{args.size}", args.slides,
                                       args.size, seed=11))
    with tempfile.TemporaryDirectory() as tmp:
        slides = slide_set(data, ("train", "val", "test"), cfg, Path(tmp) / "tiles", False,
                           False)
        n = sum(len(t) for t in slides.tilesets)
        model = build_segmenter(cfg.model).to(device).eval()
        p, bs = cfg.tiling.patch_size, cfg.stage1.infer_batch_size
        torch_settings = InferSettings.from_config(
            cfg.model_copy(update={"runtime": cfg.runtime.model_copy(
                update={"backend": "torch"})}), device)
        fast = InferSettings.from_config(cfg, device, Path(tmp) / "graphs")
        layout = torch_settings.channels_last  # PyTorch's inference layout
        # warm-up
        with torch.inference_mode():
            model(to_input(torch.zeros(bs, p, p, 3, dtype=torch.uint8), device,
                           layout))
        start = time.perf_counter()
        if fast.backend != "torch":  # once per checkpoint; cached after
            cached_graph(model, (1, 3, p, p), fast.graph_dir)
        export_s = time.perf_counter() - start
        estep_s = {}
        for name, settings in (("torch", torch_settings), (fast.backend, fast)):
            start = time.perf_counter()
            map_to_stores(model, slides, list(range(len(slides.records))),
                          Path(tmp) / f"maps-{name}", settings)
            estep_s[name] = time.perf_counter() - start

        rng = np.random.default_rng(0)
        batches = [torch.from_numpy(rng.integers(0, 255, (min(bs, n - i), p, p, 3),
                                                 dtype=np.uint8)) for i in range(0, n, bs)]
        start = time.perf_counter()
        with torch.inference_mode():
            for b in batches:
                torch.sigmoid(model(to_input(b, device, layout)))
        model_s = time.perf_counter() - start
        engines = [fast.backend] + [e for e in ("onnxruntime",)
                                    if e != fast.backend and importlib.util.find_spec(e)]
        engine_s = {}
        for engine in engines:
            net = inference_model(model, replace(fast, backend=engine), p)
            start = time.perf_counter()
            with torch.inference_mode():
                for b in batches:
                    torch.sigmoid(net(to_input(b, device, False)))
            engine_s[engine] = time.perf_counter() - start

    print(f"device={device} preset={args.preset} encoder={cfg.model.encoder} patch={p}px "
          f"batch={bs} workers={cfg.runtime.num_workers} torch_threads={torch.get_num_threads()}")
    print(f"patches: {n} over {len(slides.records)} slides")
    for name, sec in estep_s.items():
        print(f"E-step {name:<12} (read + model + store): {n / sec:8.1f} patches/s")
    print(f"model only torch (preloaded):              {n / model_s:8.1f} patches/s")
    for engine, sec in engine_s.items():
        print(f"model only {engine:<12} (preloaded):       {n / sec:8.1f} patches/s")
    print(f"graph export + cache (once per checkpoint): {export_s:8.1f} s")
    print(f"ratio E-step torch / model-only torch:     {model_s / estep_s['torch']:8.2f}")
    print(f"ratio E-step {fast.backend} / model-only torch: "
          f"{model_s / estep_s[fast.backend]:8.2f}")


if __name__ == "__main__":
    main()
