"""Pixel labels of a training patch: outlines clipped to the patch before filling (what
training does) vs whole outlines filled (the reference, ``rasterize(clip=False)``), on real
Camelyon16 ASAP annotations, over 512-px windows at downsample 2 centred on the tumour boundary
(the patches whose labels cost most), in the same run. The two must give the same pixels.

    python benchmarks/bench_labels.py [--windows N]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import shapely

from mixsup.labels.annotations import read_annotations

ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "annotations"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=60)
    n = ap.parse_args().windows
    folder = ANNOTATIONS / "camelyon16-asap"
    if not folder.is_dir():
        raise SystemExit(f"needs {folder} (../shared beside the checkout)")
    ratios = []
    for path in sorted(folder.glob("*.xml")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # repaired self-intersections
            ann = read_annotations(path)
        b = ann.tumor.boundary
        corners = [(q.x - 512, q.y - 512) for q in
                   (b.interpolate(t, normalized=True) for t in np.linspace(0, 1, n))]
        secs, masks = {}, {}
        for clip in (False, True):
            start = time.perf_counter()
            masks[clip] = [ann.rasterize(x, y, 512, 512, 2.0, clip=clip) for x, y in corners]
            secs[clip] = (time.perf_counter() - start) / n
        assert all(np.array_equal(a, b) for a, b in zip(masks[True], masks[False], strict=True))
        ratios.append(secs[False] / secs[True])
        vertices = sum(len(shapely.get_coordinates(r.geometry)) for r in ann.regions)
        print(f"{path.stem}: {len(ann.regions)} outlines ({vertices} vertices): whole "
              f"{secs[False] * 1e3:6.1f} ms, clipped {secs[True] * 1e3:5.1f} ms per label, "
              f"same pixels; ratio {ratios[-1]:.1f}", flush=True)
    print(f"ratio_labels {np.mean(ratios):.1f} (mean over {len(ratios)} files, "
          f"min {min(ratios):.1f})")


if __name__ == "__main__":
    main()
