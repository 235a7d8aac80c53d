"""The 120-slide PCam mosaic of `mixsup synth --kind pcam --n-slides 120`, generated in
parallel.

    python benchmarks/gpu/gen_pcam_zlib.py OUT PCAM_DIR
"""

import sys
import time

from parallel_synth import write_parallel

from mixsup.synth.layout import plan_slides
from mixsup.synth.pcam import PCAM_MPP, load_banks, pcam_renderer, slide_banks

if __name__ == "__main__":
    t = time.time()
    layouts = plan_slides(120, 3072, 3072, seed=0, annotated_fraction=0.5,
                          tumor_radius=(0.03, 0.08), splits=(0.5, 0.15, 0.35))
    banks = slide_banks(load_banks(sys.argv[2]))
    write_parallel(sys.argv[1], layouts, PCAM_MPP, pcam_renderer(banks), 15)
    print(f"generated 120 pcam slides in {time.time() - t:.0f} s", flush=True)
