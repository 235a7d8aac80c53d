"""E-step scaling under torchrun: --nproc_per_node=1 vs 2 on the same slides (CPU, gloo).

Each process keeps OMP_NUM_THREADS=1; on a 2-core machine the ideal speed-up is 2. Usage:

    python benchmarks/bench_scaling.py [--slides N] [--size PX]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cached_data import shapes_dataset

WORKER = r'''
import sys, time, torch
from pathlib import Path

from cached_data import shapes_dataset
from mixsup.config import load_config
from mixsup.runtime.dist import init_dist, close_dist
from mixsup.labels.table import load_dataset
from mixsup.models.factory import build_segmenter
from mixsup.runtime.device import pick_device
from mixsup.inference.settings import InferSettings
from mixsup.inference.stores import map_to_stores
from mixsup.dataset.tiles import slide_set
data, out = sys.argv[1], Path(sys.argv[2])
cfg = load_config("tiny", overrides=["runtime.num_workers=0"])
dist = init_dist("cpu")
torch.manual_seed(0)
slides = slide_set(load_dataset(data), ("train", "val", "test"), cfg, out / "tiles", False,
                   False, dist)
settings = InferSettings.from_config(cfg, pick_device(cfg.runtime))
dist.barrier()
t = time.perf_counter()
map_to_stores(build_segmenter(cfg.model), slides, list(range(len(slides.records))),
              out / "maps", settings, dist)
if dist.main:
    print(f"SECONDS {time.perf_counter() - t:.3f} PATCHES {sum(len(x) for x in slides.tilesets)}")
close_dist(dist)
'''


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(nproc: int, data: Path) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "worker.py"
        script.write_text(WORKER)
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={port()}", str(script), str(data), str(Path(tmp) / "out")]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        wall = time.perf_counter() - start
    line = next(x for x in done.stdout.splitlines() if x.startswith("SECONDS"))
    secs, n = float(line.split()[1]), int(line.split()[3])
    print(f"nproc={nproc}: E-step {secs:.1f} s ({n / secs:.1f} patches/s), wall with "
          f"start-up {wall:.1f} s")
    return secs, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slides", type=int, default=6)
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args()
    data = shapes_dataset(f"estep-{args.slides}-{args.size}", args.slides, args.size, seed=11)
    one, _ = run(1, data)
    two, _ = run(2, data)
    print(f"speed-up with 2 processes: {one / two:.2f}x")


if __name__ == "__main__":
    main()
