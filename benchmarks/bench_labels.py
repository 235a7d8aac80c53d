"""Pixel labels of a training patch: the scanline fill with the edges that cannot touch the
patch culled first (what training does) vs with every edge (the reference,
``rasterize(cull=False)``), on the real Camelyon16 annotations (ASAP XML with float vertices,
NCRF JSON with integer ones), over 512-px windows at downsample 2 with integer origins on the
tumour boundary (the patches whose labels cost most), in the same run. The pixels must agree.

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
    if not ANNOTATIONS.is_dir():
        raise SystemExit(f"needs {ANNOTATIONS} (../shared beside the checkout)")
    ratios = []
    files = sorted((ANNOTATIONS / "camelyon16-asap").glob("*.xml"))
    files += sorted((ANNOTATIONS / "camelyon16-ncrf-json").glob("Tumor_*.json"))
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # repaired self-intersections
            ann = read_annotations(path)
        b = ann.tumor.boundary
        corners = [(int(q.x) - 512, int(q.y) - 512) for q in
                   (b.interpolate(t, normalized=True) for t in np.linspace(0, 1, n))]
        secs, masks = {}, {}
        for cull in (False, True):
            start = time.perf_counter()
            masks[cull] = [ann.rasterize(x, y, 512, 512, 2.0, cull=cull) for x, y in corners]
            secs[cull] = (time.perf_counter() - start) / n
        assert all(np.array_equal(a, b) for a, b in zip(masks[True], masks[False], strict=True))
        ratios.append(secs[False] / secs[True])
        vertices = sum(len(shapely.get_coordinates(r.geometry)) for r in ann.regions)
        print(f"{path.name}: {len(ann.regions)} outlines ({vertices} vertices): every edge "
              f"{secs[False] * 1e3:6.1f} ms, culled {secs[True] * 1e3:5.1f} ms per label, "
              f"same pixels; ratio {ratios[-1]:.1f}", flush=True)
    print(f"ratio_labels {np.mean(ratios):.1f} (mean over {len(ratios)} files, "
          f"min {min(ratios):.1f})")


if __name__ == "__main__":
    main()
