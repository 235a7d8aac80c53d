"""Generate a dataset one slide per process, then merge the parts into one dataset folder.
zlib tiles need no imagecodecs (the GPU image lacks it unless its wheel is carried)."""

from __future__ import annotations

import csv
import os
import shutil
from concurrent.futures import ProcessPoolExecutor

from mixsup.labels.table import write_slides_csv
from mixsup.synth.layout import write_dataset

_JOB: dict = {}  # set before the pool forks, so the renderer needs no pickling


def _one(lay) -> None:
    write_dataset(f"{_JOB['out']}_parts/{lay.slide_id}", [lay], _JOB["mpp"], _JOB["renderer"],
                  progress=False, compression=_JOB["compression"])


def write_parallel(out: str, layouts: list, mpp: float, renderer, workers: int,
                   compression: str = "zlib") -> None:
    _JOB.update(out=out, mpp=mpp, renderer=renderer, compression=compression)
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(_one, layouts))
    for sub in ("slides", "annotations", "truth"):
        os.makedirs(f"{out}/{sub}", exist_ok=True)
    rows = []
    for lay in layouts:
        part = f"{out}_parts/{lay.slide_id}"
        for sub, ext in (("slides", "tiff"), ("annotations", "geojson"), ("truth", "geojson")):
            src = f"{part}/{sub}/{lay.slide_id}.{ext}"
            if os.path.exists(src):
                shutil.move(src, f"{out}/{sub}/{lay.slide_id}.{ext}")
        with open(f"{part}/slides.csv") as fh:
            rows += list(csv.DictReader(fh))
    write_slides_csv(f"{out}/slides.csv", rows)
