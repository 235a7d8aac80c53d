"""Peak RSS of ``mixsup predict`` on a 20k^2 and a 40k^2 slide (same bundle): the ratio shows
whether memory grows with slide size. Each prediction runs in a fresh process.

    python benchmarks/bench_rss.py RUN_OR_BUNDLE
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cached_data import shapes_dataset

PROBE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def slide(size: int) -> Path:
    return shapes_dataset(f"{size // 1000}k", 1, size, seed=5) / "slides" / "slide_000.tiff"


def peak_rss_mb(bundle: str, path: Path) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-c", PROBE, sys.executable, "-m", "mixsup", "-q", "predict",
               bundle, str(path), "--out", out]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return int(done.stdout.split()[-1]) / 1024, time.perf_counter() - start


def main() -> None:
    bundle = sys.argv[1]
    rows = []
    for size in (20000, 40000):
        rss, secs = peak_rss_mb(bundle, slide(size))
        rows.append(rss)
        print(f"{size}x{size}: peak RSS {rss:8.0f} MB, {secs:6.0f} s")
    print(f"ratio 40k/20k: {rows[1] / rows[0]:.2f} (1.0 would be size-independent)")


if __name__ == "__main__":
    main()
