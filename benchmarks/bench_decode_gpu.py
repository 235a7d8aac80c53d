"""JPEG tiles decoded on the GPU (nvJPEG through ``torchvision.io.decode_jpeg``) vs the direct
reader's decoder on the CPU (libjpeg-turbo through tifffile/imagecodecs), on one core and on
every core, over the level-0 tiles of each slide given; the pixels of both are compared.

    python benchmarks/bench_decode_gpu.py SLIDE [SLIDE ...]

Without CUDA the "GPU" column is torchvision's CPU decoder (a rehearsal, not a measurement).
The streams are built before timing (the tables merged in, an Adobe marker on RGB-coded tiles);
their pixels are also checked through torchvision's CPU decoder (libjpeg-turbo).
Last line per slide: ``ratio_gpu_vs_all_cores X.XX``.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import tifffile
import torch
from torchvision.io import decode_jpeg

N_TILES = int(os.environ.get("BENCH_TILES", "4096"))
CHUNK = int(os.environ.get("BENCH_CHUNK", "256"))


def level0_tiles(path: str) -> tuple[Any, Any, list[bytes], list[int], str] | None:
    """The largest tiled JPEG page, its decoder, and up to N_TILES of its non-empty tiles
    (repeated when the page has fewer) as the bytes stored in the file."""
    with tifffile.TiffFile(path) as tif:
        pages = [p for p in tif.pages if p.is_tiled and p.compression.name == "JPEG"]
        if not pages:
            return None
        page = max(pages, key=lambda p: p.imagewidth * p.imagelength)
        if not any(page.databytecounts):
            return None
        fh = tif.filehandle
        raw, index = [], []
        for i, (off, count) in enumerate(zip(page.dataoffsets, page.databytecounts,
                                             strict=True)):
            if count:
                fh.seek(off)
                raw.append(fh.read(count))
                index.append(i)
        photometric = page.photometric.name
        decode = page.decode  # made while the file is open; it needs no file afterwards
    reps = -(-N_TILES // len(raw))
    return page, decode, (raw * reps)[:N_TILES], (index * reps)[:N_TILES], photometric


# Adobe's APP14 marker with transform 0: "the components are RGB, not YCbCr". Aperio writes
# RGB-coded JPEG tiles without it, and decoders then apply the YCbCr transform to RGB data.
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


def full_stream(tile: bytes, tables: bytes | None, rgb: bool) -> bytes:
    """A tile stored as an abbreviated JPEG (tables in the TIFF's JPEGTables tag) as one
    self-contained stream: the tables' markers between the tile's SOI and the rest; ``rgb``
    adds the Adobe marker after SOI."""
    head = b"\xff\xd8" + (ADOBE_RGB if rgb else b"")
    body = (tables[2:-2] if tables else b"") + tile[2:]  # tables: SOI ... EOI; tile: SOI ...
    return head + body


def rate(fn, n: int) -> float:
    fn()  # warm-up: thread pool, CUDA context, nvJPEG handles
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main(paths: list[str]) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    label = torch.cuda.get_device_name() if device == "cuda" else "cpu (rehearsal)"
    cores = os.cpu_count() or 1
    print(f"{label}, torch {torch.__version__}, {cores} cores", flush=True)
    for path in paths:
        bench_slide(path, device, cores)


def bench_slide(path: str, device: str, cores: int) -> None:
    found = level0_tiles(path)
    if found is None:
        print(f"{os.path.basename(path)}: no tiled JPEG page, skipped", flush=True)
        return
    page, decode, raw, index, photometric = found
    tables = page.jpegtables
    streams = [torch.frombuffer(bytearray(full_stream(t, tables, photometric == "RGB")),
                                dtype=torch.uint8) for t in raw]

    def cpu_one(i: int) -> np.ndarray:
        return decode(raw[i], index[i], jpegtables=tables)[0][0]

    def cpu_serial() -> None:
        for i in range(len(raw)):
            cpu_one(i)

    def cpu_threads() -> None:
        with ThreadPoolExecutor(cores) as ex:
            list(ex.map(cpu_one, range(len(raw))))

    def gpu() -> None:
        for k in range(0, len(streams), CHUNK):
            decode_jpeg(streams[k:k + CHUNK], device=device)

    one = rate(cpu_serial, len(raw))
    every = rate(cpu_threads, len(raw))
    nv = rate(gpu, len(raw))
    diffs, turbo = [], []
    for i in range(min(64, len(raw))):
        ref = cpu_one(i).astype(np.int16)
        got = decode_jpeg(streams[i], device=device).permute(1, 2, 0).cpu().numpy()
        diffs.append(np.abs(got[:ref.shape[0], :ref.shape[1]].astype(np.int16) - ref))
        # the same self-contained stream through torchvision's CPU decoder (libjpeg-turbo)
        cpu = decode_jpeg(streams[i]).permute(1, 2, 0).numpy()
        turbo.append(int(np.abs(cpu[:ref.shape[0], :ref.shape[1]].astype(np.int16) - ref).max()))
    d = np.stack(diffs)
    print(f"{os.path.basename(path)}: {len(raw)} tiles of {page.tilewidth}x"
          f"{page.tilelength} (photometric {photometric}, shared tables "
          f"{'yes' if tables else 'no'}) | CPU 1 core {one:8.1f} tiles/s | CPU {cores} "
          f"threads {every:8.1f} tiles/s | {device} decode_jpeg {nv:8.1f} tiles/s | "
          f"pixels vs CPU: max |d| {int(d.max())}, mean |d| {float(d.mean()):.3f}, "
          f"share |d|>2 {float((d > 2).mean()):.4f} | the same streams on torchvision's CPU "
          f"decoder: max |d| {max(turbo)}", flush=True)
    print(f"ratio_gpu_vs_one_core {nv / one:.2f}")
    print(f"ratio_gpu_vs_all_cores {nv / every:.2f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
