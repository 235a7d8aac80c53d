"""Generate a shapes dataset in parallel.

    python benchmarks/gpu/gen_shapes_zlib.py N SIZE OUT MPP
"""

import sys
import time

from parallel_synth import write_parallel

from mixsup.synth.layout import plan_slides
from mixsup.synth.shapes import shapes_renderer

if __name__ == "__main__":
    n, size, out, mpp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    t = time.time()
    layouts = plan_slides(n, size, size, seed=3, annotated_fraction=1.0)
    write_parallel(out, layouts, mpp, shapes_renderer, min(8, n))
    print(f"generated {n} slides of {size}^2 at {mpp} um/px in {time.time() - t:.0f} s")
