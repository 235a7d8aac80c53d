"""Generate a shapes dataset in parallel without imagecodecs (zlib tiles)."""
import csv
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from mixsup.labels.table import write_slides_csv
from mixsup.synth.layout import plan_slides, write_dataset
from mixsup.synth.shapes import shapes_renderer

N, SIZE, OUT, MPP = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])


def one(lay):
    write_dataset(f"{OUT}_parts/{lay.slide_id}", [lay], MPP, shapes_renderer, progress=False,
                  compression="zlib")


if __name__ == "__main__":
    t = time.time()
    layouts = plan_slides(N, SIZE, SIZE, seed=3, annotated_fraction=1.0)
    with ProcessPoolExecutor(min(8, N)) as ex:
        list(ex.map(one, layouts))
    for sub in ("slides", "annotations", "truth"):
        os.makedirs(f"{OUT}/{sub}", exist_ok=True)
    rows = []
    for lay in layouts:
        part = f"{OUT}_parts/{lay.slide_id}"
        for sub, ext in (("slides", "tiff"), ("annotations", "geojson"), ("truth", "geojson")):
            src = f"{part}/{sub}/{lay.slide_id}.{ext}"
            if os.path.exists(src):
                shutil.move(src, f"{OUT}/{sub}/{lay.slide_id}.{ext}")
        with open(f"{part}/slides.csv") as fh:
            rows += list(csv.DictReader(fh))
    write_slides_csv(f"{OUT}/slides.csv", rows)
    print(f"generated {N} slides of {SIZE}^2 at {MPP} um/px in {time.time() - t:.0f} s")
