"""``mixsup predict``: tiling, θ1, top-K and θ2 on new slides, with heatmaps and GeoJSON.

Per slide it writes (atomically; ``slides/<id>.json`` last, as the done marker):

    maps/<id>.zarr        per-patch probability maps and max probabilities
    probmaps/<id>.zarr    the stitched probability map (mean over overlaps)
    heatmaps/<id>.png     heatmap (1,000-2,000 px), top-K boxes, colour and scale bars
    regions/<id>.geojson  suspicious regions (p >= 0.5) and ranked top-K boxes, for QuPath
    slides/<id>.json      slide probability, prediction and top-K patches

and at the end ``predictions.csv``, ``topk.csv`` and ``predict.json``.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from tqdm import tqdm

from mixsup.atomic import atomic_open, remove_partial, write_json
from mixsup.bundle import Bundle, bundle_meta, load_bundle
from mixsup.config import Config
from mixsup.dist import SINGLE, Dist
from mixsup.errors import MixsupError
from mixsup.heatmap import stitch, stitch_to_zarr
from mixsup.heatmap_figure import LONG_SIDE, heatmap_png, png_mpp
from mixsup.infer import infer_patches
from mixsup.labels.annotations import Region, SlideAnnotations, mask_polygons, write_geojson
from mixsup.labels.table import load_dataset
from mixsup.mapstore import MapWriter
from mixsup.patches import SlideSource
from mixsup.runtime import compiled, pick_device
from mixsup.slides.reader import Slide
from mixsup.slides.tiling import tile_slide
from mixsup.train.stage2 import TopKPatches, mean_of_valid, patch_probs
from mixsup.train.topk import top_k

log = logging.getLogger(__name__)
SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".svslide",
                  ".dcm"}


@dataclass
class PredictResult:
    out: Path
    rows: list[dict[str, Any]]
    skipped: dict[str, str] = field(default_factory=dict)


def collect_inputs(paths: list[str], data: str | None = None,
                   split: str | None = None) -> list[tuple[str, Path]]:
    items: list[tuple[str, Path]] = []
    if data:
        ds = load_dataset(data)
        items += [(r.slide_id, r.path) for r in ds.slides if split is None or r.split == split]
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in SLIDE_SUFFIXES)
            items += [(f.stem, f) for f in files]
        elif p.exists():
            items.append((p.stem, p))
        else:
            raise MixsupError("no such slide or folder", "check the path", p)
    ids = [i for i, _ in items]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise MixsupError(f"several inputs share the slide id(s) {', '.join(dup)}",
                          "rename the files or predict the folders separately")
    if not items:
        raise MixsupError("no slide to predict", "pass slide files, folders or --data DATA")
    return items


def predict(run_or_bundle: str | Path, inputs: list[tuple[str, Path]], out: str | Path,
            cfg: Config | None = None, strict: bool = False, progress: bool = True,
            threshold: float | None = None, dist: Dist = SINGLE) -> PredictResult:
    """``cfg`` defaults to the bundle's; pass one (see ``bundle_config``) to change e.g. the
    device, workers or an MPP override. Settings the models depend on come from the bundle.

    Under torchrun each rank predicts a disjoint shard of the slides; rank 0 then writes the
    tables from every slide's result file.
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise MixsupError(f"threshold {threshold} is not a probability",
                          "pass --threshold between 0 and 1")
    out = Path(out)
    cfg = cfg or bundle_config(run_or_bundle)
    device = pick_device(cfg.runtime, dist.local_rank)
    bundle = load_bundle(run_or_bundle, device)
    cfg = cfg.model_copy(update={k: getattr(bundle.cfg, k)
                                 for k in ("tiling", "tissue", "model", "stage1", "stage2")})
    thr = bundle.threshold if threshold is None else threshold
    bundle.theta1.to(device)
    if bundle.theta2 is not None:
        bundle.theta2.to(device)
    bundle = replace(bundle, theta1=compiled(bundle.theta1, cfg.runtime),
                     theta2=None if bundle.theta2 is None
                     else compiled(bundle.theta2, cfg.runtime))
    skipped: dict[str, str] = {}
    if dist.main and out.is_dir():
        remove_partial(out)  # a killed run's half-written stores; their slides are redone
    dist.barrier()
    mine = dist.shard(list(inputs))
    for slide_id, path in tqdm(mine, desc="predict", unit="slide",
                               disable=not (progress and dist.main)):
        if (out / "slides" / f"{slide_id}.json").is_file():
            continue
        try:
            _predict_slide(bundle, cfg, slide_id, path, out, device, thr)
        except MixsupError as exc:
            if strict:
                raise
            log.warning("skipping %s: %s", slide_id, exc)
            skipped[slide_id] = str(exc)
    for part in dist.all_gather(skipped):
        skipped.update(part)
    dist.barrier()
    rows = [json.loads((out / "slides" / f"{sid}.json").read_text())
            for sid, _ in inputs if sid not in skipped]
    if not dist.main:
        dist.barrier()
        return PredictResult(out, rows, skipped)
    for r in rows:
        r["prediction"] = int(r["probability"] >= thr)
    _write_tables(out, rows)
    write_json(out / "predict.json", {"operating_threshold": thr, "bundle": str(run_or_bundle),
                                      "selected_round": bundle.meta.get("selected_round"),
                                      "n_slides": len(rows), "skipped": skipped})
    dist.barrier()
    return PredictResult(out, rows, skipped)


def bundle_config(path: str | Path, files: tuple = (), overrides: tuple = ()) -> Config:
    """The bundle's config with optional YAML files and ``key=value`` overrides on top."""
    from mixsup.config import apply_overrides

    return apply_overrides(bundle_meta(path)["config"], files, overrides)


def _predict_slide(bundle: Bundle, cfg: Config, slide_id: str, path: Path, out: Path,
                   device: Any, thr: float) -> dict[str, Any]:
    rt = cfg.runtime
    with Slide(path, cfg.reader.backend, cfg.reader.mpp, cfg.reader.cache_bytes) as slide:
        tiles = tile_slide(slide, slide_id, cfg.tiling, cfg.tissue, out / "tiles")
        source = SlideSource(slide_id, str(path), cfg.reader.backend, cfg.reader.mpp,
                             cfg.reader.cache_bytes)
        image_mode = bundle.theta2 is None
        map_ds = tiles.patch_size if image_mode else cfg.stage1.map_downsample
        # Maps stream into the store (a few chunks in memory), and everything after reads them
        # back from it, so memory does not grow with the slide.
        maps = infer_patches(bundle.theta1, source, tiles.coords, tiles.patch_size, tiles.mpp,
                             map_ds, device,
                             batch_size=cfg.stage1.infer_batch_size,
                             num_workers=rt.num_workers, amp=rt.amp,
                             channels_last=rt.channels_last,
                             open_sink=lambda _i, _n, m: MapWriter(
                                 out / "maps" / f"{slide_id}.zarr", tiles.coords, m,
                                 {"key": tiles.key, "slide_id": slide_id,
                                  "size0": tiles.size0}))
        m = maps.maps.shape[-1]
        stitch_to_zarr(out / "probmaps" / f"{slide_id}.zarr", tiles.coords, maps.maps,
                       tiles.size0, slide.dimensions, tiles.size0 / m)
        order = top_k(maps.max_prob, cfg.mil.top_k if image_mode else cfg.stage2.top_k)
        if image_mode:
            from mixsup.train.mil import aggregate

            prob = aggregate(maps.max_prob, cfg.mil)
            top_probs = maps.max_prob[order].tolist()
        elif len(order):
            ds = TopKPatches([source], [tiles.coords[order]], [0], cfg.stage2.top_k,
                             tiles.patch_size, tiles.mpp)
            prob, top_probs = _score_top_k(bundle, ds, device, rt)
        else:
            log.warning("%s: no tissue patch; probability set to 0", path)
            prob, top_probs = 0.0, []
        topk = [{"rank": r + 1, "x": int(tiles.coords[j][0]), "y": int(tiles.coords[j][1]),
                 "size": float(tiles.size0), "max_pixel_prob": float(maps.max_prob[j]),
                 "patch_prob": float(top_probs[r]) if r < len(top_probs) else None}
                for r, j in enumerate(order)]
        thumb, thumb_mpp = slide.thumbnail(
            png_mpp(slide.mpp, slide.dimensions, cfg.tissue.thumbnail_mpp), LONG_SIDE[1])
        ds0 = thumb_mpp / slide.mpp
        heat, count = stitch(tiles.coords, maps.maps, tiles.size0, slide.dimensions, ds0)
        heatmap_png(out / "heatmaps" / f"{slide_id}.png", thumb, heat, count > 0,
                    [(t["rank"], t["x"] / ds0, t["y"] / ds0, t["size"] / ds0) for t in topk],
                    thumb_mpp, title=f"{slide_id}: probability {prob:.4g}")
        _regions(out / "regions" / f"{slide_id}.geojson", heat, ds0, topk)
    row = {"slide_id": slide_id, "path": str(path), "probability": prob,
           "prediction": int(prob >= thr), "n_patches": len(tiles), "topk": topk}
    write_json(out / "slides" / f"{slide_id}.json", row)
    return row


def _score_top_k(bundle: Bundle, ds: TopKPatches, device: Any,
                 rt: Any) -> tuple[float, list[float]]:
    """(slide probability, each real top-K patch's probability) from one θ2 pass."""
    import torch

    patches, valid, _ = ds[0]
    bundle.theta2.eval()
    with torch.inference_mode():
        probs = patch_probs(bundle.theta2, patches[None], valid[None], device, rt)
        slide = float(mean_of_valid(probs, valid[None])[0])
    return slide, probs[0, : int(valid.sum())].cpu().tolist()


def _regions(path: Path, heat: np.ndarray, ds0: float, topk: list[dict[str, Any]]) -> None:
    regions = [Region("Suspicious (p>=0.5)", "tumor", g)
               for g in mask_polygons(heat >= 0.5, ds0)]
    for t in topk:
        box = shapely.box(t["x"], t["y"], t["x"] + t["size"], t["y"] + t["size"])
        scores = [("rank", float(t["rank"])), ("max pixel probability", t["max_pixel_prob"])]
        if t["patch_prob"] is not None:
            scores.append(("patch probability", t["patch_prob"]))
        regions.append(Region(f"Top-K #{t['rank']}", "ignore", box, classification="Top-K",
                              measurements=tuple(scores)))
    write_geojson(path, SlideAnnotations(tuple(regions)))


def _write_tables(out: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(out / "predictions.csv") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["slide_id", "probability", "prediction"])
        for r in rows:
            # repr: the exact value, so that re-reading it gives the same call at the threshold
            w.writerow([r["slide_id"], repr(float(r["probability"])), r["prediction"]])
    with atomic_open(out / "topk.csv") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["slide_id", "rank", "x", "y", "size_level0", "max_pixel_prob",
                    "patch_prob"])
        for r in rows:
            for t in r["topk"]:
                w.writerow([r["slide_id"], t["rank"], t["x"], t["y"], f"{t['size']:.1f}",
                            f"{t['max_pixel_prob']:.6f}",
                            "" if t["patch_prob"] is None else f"{t['patch_prob']:.6f}"])
