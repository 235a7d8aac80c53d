"""GPU throughput of θ1 = DLA34-up at 512 px (paper preset): model-only forward and training
step with AMP (bf16) vs fp32, a training step with HED stain jitter on the device and on the
host vs none, the E-step (read + model + store) vs model-only forward on preloaded tensors
(BENCH_ESTEP_ONLY=1: only this) for each slide reader in BENCH_READERS (auto, openslide,
...) and loader worker count in BENCH_WORKERS, and (BENCH_COMPILE=1) torch.compile vs eager,
all in the same run. BENCH_SET: config overrides, e.g. "runtime.channels_last=true".

    python benchmarks/bench_gpu.py DATA_DIR

DATA_DIR is a generated dataset (e.g. ``mixsup synth DATA --kind shapes --size 8192``).
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from mixsup.config import load_config
from mixsup.dataset.tiles import slide_set
from mixsup.inference.settings import InferSettings
from mixsup.inference.stores import map_to_stores
from mixsup.labels.table import load_dataset
from mixsup.models.dla_up import DLAUpSegmenter
from mixsup.runtime.device import autocast, pick_device, to_input
from mixsup.slides.reader import Slide
from mixsup.train.stain import hed_jitter


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, n: int) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return time.perf_counter() - start


ITERS = int(os.environ.get("BENCH_ITERS", "10"))
BATCH = int(os.environ.get("BENCH_BATCH", "64"))
WORKERS = [int(w) for w in os.environ.get("BENCH_WORKERS", "8").split(",")]
READERS = os.environ.get("BENCH_READERS", "auto").split(",")


def model_only(model, device, amp: bool, batch: int, train: bool) -> float:
    x = torch.randn(batch, 3, 512, 512, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with autocast(device, amp):
            y = model(x)
        if train:
            opt.zero_grad(set_to_none=True)
            y.float().mean().backward()
            opt.step()

    model.train(train)
    ctx = torch.enable_grad() if train else torch.inference_mode()
    with ctx:
        for _ in range(min(3, ITERS)):
            step()
        secs = timed(step, ITERS)
    return ITERS * batch / secs


def jitter_step(model, device, batch: int, where: str) -> float:
    """Training steps/s x batch from uint8 NHWC images as the loader gives them: stain jitter
    ``off``, on the ``device`` (what ``fit`` does) or on the ``host`` before the copy."""
    images = torch.randint(0, 255, (batch, 512, 512, 3), dtype=torch.uint8)
    on_device = images.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    def step():
        if where == "host":
            x = hed_jitter(images, 0.05, 0.05, gen).to(device, non_blocking=True)
        elif where == "device":
            x = hed_jitter(on_device, 0.05, 0.05, gen)
        else:
            x = on_device
        with autocast(device, True):
            y = model(to_input(x, device, True))
        opt.zero_grad(set_to_none=True)
        y.float().mean().backward()
        opt.step()

    model.train()
    n = max(2, ITERS // 2) if where == "host" else ITERS
    step()
    return n * batch / timed(step, n)


def model_and_jitter(model, device) -> None:
    fwd32 = model_only(model, device, False, BATCH, False)
    fwd16 = model_only(model, device, True, BATCH, False)
    tr32 = model_only(model, device, False, BATCH // 2, True)
    tr16 = model_only(model, device, True, BATCH // 2, True)
    print(f"DLA34-up 512px forward  fp32 {fwd32:8.1f} patches/s | bf16 AMP {fwd16:8.1f} "
          f"patches/s | ratio {fwd16 / fwd32:.2f}")
    print(f"DLA34-up 512px train    fp32 {tr32:8.1f} patches/s | bf16 AMP {tr16:8.1f} "
          f"patches/s | ratio {tr16 / tr32:.2f}")
    rates = {w: jitter_step(model, device, BATCH // 2, w) for w in ("off", "device", "host")}
    print(f"DLA34-up 512px train bf16, stain jitter: off {rates['off']:8.1f} | on the device "
          f"{rates['device']:8.1f} | on the host {rates['host']:8.1f} patches/s | ratio "
          f"device/off {rates['device'] / rates['off']:.2f}, host/off "
          f"{rates['host'] / rates['off']:.2f}", flush=True)


def main(data_dir: str) -> None:
    cfg = load_config("paper", overrides=[f"runtime.num_workers={WORKERS[0]}",
                                          f"stage1.infer_batch_size={BATCH}",
                                          *os.environ.get("BENCH_SET", "").split()])
    device = pick_device(cfg.runtime)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(name, "torch", torch.__version__)
    model = DLAUpSegmenter("dla34").to(device)  # NCHW, the paper preset's default
    if os.environ.get("BENCH_ESTEP_ONLY") != "1":
        model_and_jitter(model, device)
    data = load_dataset(data_dir)
    x = torch.randint(0, 255, (BATCH, 512, 512, 3), dtype=torch.uint8)
    layout = InferSettings.from_config(cfg, device).channels_last  # as the E-step runs

    def preloaded():
        with torch.inference_mode(), autocast(device, True):
            torch.sigmoid(model(to_input(x, device, layout)))

    with tempfile.TemporaryDirectory() as tmp:
        slides = slide_set(data, ("train", "val", "test"), cfg, Path(tmp) / "tiles", False,
                           False)
        n = sum(len(t) for t in slides.tilesets)
        model.eval()
        # A repeated setting gets fresh folders: map_to_stores resumes from stores it finds.
        for run_no, (reader, workers) in enumerate(itertools.product(READERS, WORKERS)):
            run = replace(slides, sources=[replace(s, backend=reader) for s in slides.sources])
            with Slide(run.sources[0].path, reader) as probe:
                opened = probe.backend  # what the loader's workers open
            settings = replace(InferSettings.from_config(cfg, device), num_workers=workers)
            for attempt in range(2):  # the first pass warms the page cache and cudnn
                start = time.perf_counter()
                map_to_stores(model, run, list(range(len(run.records))),
                              Path(tmp) / f"maps{run_no}_{attempt}", settings)
                sync()
                estep = n / (time.perf_counter() - start)
            for _ in range(3):
                preloaded()
            steps = max(1, n // BATCH)
            pre = steps * BATCH / timed(preloaded, steps)
            print(f"E-step over {n} patches ({len(run.records)} slides, reader {opened}, "
                  f"{'channels_last' if layout else 'NCHW'} input, "
                  f"{workers} workers): {estep:8.1f} patches/s | model-only on preloaded "
                  f"uint8 batches: {pre:8.1f} patches/s | ratio {estep / pre:.2f}", flush=True)
    if os.environ.get("BENCH_COMPILE") == "1":
        fast = torch.compile(model, dynamic=False)
        start = time.perf_counter()
        model_only(fast, device, True, BATCH, False)
        warm = time.perf_counter() - start
        eager, comp = (model_only(m, device, True, BATCH, False) for m in (model, fast))
        print(f"DLA34-up 512px forward bf16: eager {eager:8.1f} patches/s | torch.compile "
              f"{comp:8.1f} patches/s | ratio {comp / eager:.2f} (compilation + warm-up "
              f"{warm:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
