"""Time the peer tiler hs2p on slides; runs inside the benchmark environment, not mixsup's.

hs2p is installed only into ``.venv-bench`` (``make bench-env``), so ``bench_tiling.py`` calls
this script with that environment's Python and reads one JSON line per slide from stdout:

    .venv-bench/bin/python benchmarks/peer_hs2p.py --mpp 0.5 --size 512 --overlap 128 \
        --seg-mpp 8.0 SLIDE ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hs2p import FilterConfig, SegmentationConfig, SlideSpec, TilingConfig, tile_slide


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("slides", nargs="+", type=Path)
    ap.add_argument("--mpp", type=float, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--overlap", type=int, required=True)
    ap.add_argument("--seg-mpp", type=float, required=True,
                    help="tissue-mask resolution, to match mixsup's tissue.thumbnail_mpp")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import openslide

    for path in args.slides:
        with openslide.OpenSlide(str(path)) as s:
            mpp0 = float(s.properties[openslide.PROPERTY_NAME_MPP_X])
        tiling = TilingConfig(requested_spacing_um=args.mpp, requested_tile_size_px=args.size,
                              tolerance=0.1, overlap=args.overlap / args.size,
                              backend="openslide", mask_backend="openslide")
        seg = SegmentationConfig(method="otsu",
                                 downsample=max(1, round(args.seg_mpp / mpp0)))
        best, n = float("inf"), 0
        try:
            for _ in range(args.repeat):
                start = time.perf_counter()
                result = tile_slide(SlideSpec(sample_id=path.stem, image_path=path),
                                    tiling=tiling, segmentation=seg, filtering=FilterConfig())
                best = min(best, time.perf_counter() - start)
                n = int(result.num_tiles)
        except ValueError as exc:  # e.g. hs2p refuses to upsample a slide to a finer MPP
            print(json.dumps({"slide": str(path), "error": str(exc)}), flush=True)
            continue
        print(json.dumps({"slide": str(path), "seconds": best, "patches": n}), flush=True)


if __name__ == "__main__":
    main()
