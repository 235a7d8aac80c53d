"""Memory layout of θ1's input: forward (inference) and training step with the batch in
NCHW-contiguous memory vs channels_last (what the loader's NHWC uint8 becomes when permuted to
NCHW without a copy), in the same run, from batches already on the device (bf16 AMP on a GPU).

    python benchmarks/bench_layout.py [--preset paper|small|tiny]

The preset gives the model and the patch size: ``paper`` is DLA34-up at 512 px (batch 64, 32
for training), the others their encoder at their patch size (batch 64 both ways).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mixsup.config import load_config
from mixsup.models.factory import build_segmenter
from mixsup.runtime.device import autocast

ITERS = int(os.environ.get("BENCH_ITERS", "12"))
BATCH = int(os.environ.get("BENCH_BATCH", "64"))


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rate(model: torch.nn.Module, x: torch.Tensor, train: bool) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train(train)

    def step() -> None:
        with autocast(x.device, True):
            y = model(x)
        if train:
            opt.zero_grad(set_to_none=True)
            y.float().mean().backward()
            opt.step()

    with torch.enable_grad() if train else torch.inference_mode():
        for _ in range(3):
            step()
        sync()
        start = time.perf_counter()
        for _ in range(ITERS):
            step()
        sync()
    return ITERS * x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paper")
    preset = ap.parse_args().preset
    cfg = load_config(preset)
    size = cfg.tiling.patch_size
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(torch.cuda.get_device_name() if device.type == "cuda" else
          f"cpu, {torch.get_num_threads()} threads", torch.__version__)
    model = build_segmenter(cfg.model, load_weights=False).to(device)
    train_batch = BATCH // 2 if preset == "paper" else BATCH
    for train, batch in ((False, BATCH), (True, train_batch)):
        nhwc = torch.randint(0, 255, (batch, size, size, 3), dtype=torch.uint8, device=device)
        implicit = nhwc.permute(0, 3, 1, 2).float().div_(255.0)  # what to_input gives
        assert implicit.is_contiguous(memory_format=torch.channels_last)
        plain = implicit.contiguous()
        r_cl, r_nchw = rate(model, implicit, train), rate(model, plain, train)
        r_cl2 = rate(model, implicit, train)  # again, so drift shows
        what = "train step" if train else "forward   "
        print(f"{preset}: {cfg.model.encoder} {size}px {what} batch {batch}: channels_last "
              f"{r_cl:8.1f} / "
              f"{r_cl2:8.1f} | NCHW {r_nchw:8.1f} patches/s | ratio NCHW/channels_last "
              f"{2 * r_nchw / (r_cl + r_cl2):.2f}", flush=True)


if __name__ == "__main__":
    main()
