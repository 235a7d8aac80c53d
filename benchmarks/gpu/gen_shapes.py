"""Generate a shapes dataset in parallel.

    python benchmarks/gpu/gen_shapes.py N SIZE OUT MPP [COMPRESSION]

COMPRESSION: zlib (default; needs no imagecodecs) or jpeg.
"""

import sys
import time

from parallel_synth import write_parallel

from mixsup.synth.layout import plan_slides
from mixsup.synth.shapes import shapes_renderer

if __name__ == "__main__":
    n, size, out, mpp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    compression = sys.argv[5] if len(sys.argv) > 5 else "zlib"
    t = time.time()
    layouts = plan_slides(n, size, size, seed=3, annotated_fraction=1.0)
    write_parallel(out, layouts, mpp, shapes_renderer, min(16, n), compression)
    print(f"generated {n} {compression} slides of {size}^2 at {mpp} um/px in "
          f"{time.time() - t:.0f} s")
