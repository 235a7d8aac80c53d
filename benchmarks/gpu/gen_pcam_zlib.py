"""The PCam mosaic of `mixsup synth --kind pcam --n-slides N --size SIZE` (same layouts and
patches; zlib tiles), generated one slide per process.

    python benchmarks/gpu/gen_pcam_zlib.py OUT PCAM_DIR [SIZE=3072] [N=120]
"""

import os
import sys
import time

from parallel_synth import write_parallel

from mixsup.synth.layout import plan_slides
from mixsup.synth.pcam import PCAM_MPP, load_banks, pcam_renderer, slide_banks

if __name__ == "__main__":
    t = time.time()
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 3072
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 120
    layouts = plan_slides(n, size, size, seed=0, annotated_fraction=0.5,
                          tumor_radius=(0.03, 0.08), splits=(0.5, 0.15, 0.35))
    banks = slide_banks(load_banks(sys.argv[2]))
    write_parallel(sys.argv[1], layouts, PCAM_MPP, pcam_renderer(banks),
                   min(15, os.cpu_count() or 1))
    print(f"generated {n} pcam slides of {size}^2 in {time.time() - t:.0f} s", flush=True)
