"""θ1's maps of many slides, streamed into one map store per slide (the E-step, validation)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mixsup.dataset.tiles import SlideSet
from mixsup.errors import MixsupError
from mixsup.inference.map_store import MapWriter, StoredMaps, open_maps
from mixsup.inference.patch_maps import map_slides
from mixsup.inference.settings import InferSettings
from mixsup.runtime.dist import SINGLE, Dist


@dataclass(frozen=True)
class MapStores:
    maps: dict[int, StoredMaps]  # slide index -> its store
    seconds: float
    patches_per_s: float  # over the slides inferred now (reused stores not counted)


def map_to_stores(model: torch.nn.Module, slides: SlideSet, which: list[int], out_dir: Path,
                  settings: InferSettings, dist: Dist = SINGLE, progress: bool = False,
                  desc: str = "infer") -> MapStores:
    """Map stores for the chosen slides; stores that already exist for the same tiling are
    reused. Maps stream into the stores, so memory does not grow with the number of slides.

    Under torchrun each rank infers a disjoint shard of the missing slides and writes their
    stores; after a barrier every rank opens the others' from disk.
    """
    model.to(settings.device)
    out: dict[int, StoredMaps] = {}
    todo = []

    def store(i: int) -> Path:
        return out_dir / f"{slides.records[i].slide_id}.zarr"

    for i in which:
        got = open_maps(store(i), expect_key=slides.tilesets[i].key)
        if got is None:
            todo.append((i, slides.tilesets[i].coords))
        else:
            out[i] = got

    def open_sink(i: int, n: int, m: int) -> MapWriter:
        tiles = slides.tilesets[i]
        return MapWriter(store(i), tiles.coords, m,
                         {"key": tiles.key, "slide_id": slides.records[i].slide_id,
                          "size0": tiles.size0, "written_by_rank": dist.rank})

    start = time.perf_counter()
    mine = dist.shard(todo)
    n_done = dist.mean(float(sum(len(c) for _, c in mine))) * dist.world
    if mine:
        t = slides.tilesets[mine[0][0]]
        for i, stored in map_slides(model, slides.sources, mine, t.patch_size, t.mpp, settings,
                                    progress=progress, desc=desc, open_sink=open_sink):
            out[i] = stored
    dist.barrier()
    for i, _ in todo:
        if i not in out:
            got = open_maps(store(i), expect_key=slides.tilesets[i].key)
            if got is None:
                raise MixsupError(f"rank {dist.rank}: the map store of "
                                  f"{slides.records[i].slide_id} is missing after the E-step",
                                  "check the other ranks' logs", out_dir)
            out[i] = got
    elapsed = time.perf_counter() - start
    return MapStores(out, elapsed, n_done / max(elapsed, 1e-9))
