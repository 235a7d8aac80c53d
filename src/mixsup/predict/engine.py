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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import shapely
import torch

from mixsup.config import Config, apply_overrides
from mixsup.dataset.tissue_geojson import GeoJSONTissue, read_tissue_geojson, tissue_path
from mixsup.errors import MixsupError, ModelOutputError
from mixsup.inference.map_store import StoredMaps
from mixsup.inference.settings import InferSettings
from mixsup.inference.slide import SlideScore, TopKPatch
from mixsup.labels.formats.qupath import write_geojson
from mixsup.labels.raster import mask_polygons
from mixsup.labels.regions import Region, SlideAnnotations
from mixsup.labels.table import load_dataset
from mixsup.methods.bundle import Bundle, BundleFile, load_bundle, read_bundle
from mixsup.methods.bundle_meta import BUNDLE_FIX
from mixsup.render.heatmap import stitch_to_zarr
from mixsup.render.heatmap_figure import LONG_SIDE, heatmap_png, png_mpp
from mixsup.runtime.device import pick_device
from mixsup.runtime.dist import SINGLE, Dist
from mixsup.runtime.progress import progress_bar
from mixsup.slides.patches import SlideSource
from mixsup.slides.reader import Slide
from mixsup.slides.tiling import tile_slide
from mixsup.storage.atomic import atomic_open, remove_partial, write_json
from mixsup.storage.records import read_record, to_json

log = logging.getLogger(__name__)
SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".svslide",
                  ".dcm"}


@dataclass(frozen=True)
class SlidePrediction:
    """``slides/<id>.json``."""

    slide_id: str
    path: str
    probability: float
    prediction: int  # at the operating threshold
    n_patches: int
    topk: tuple[TopKPatch, ...]


@dataclass(frozen=True)
class PredictResult:
    out: Path
    rows: list[SlidePrediction]
    skipped: dict[str, str] = field(default_factory=dict)


RECORD_FIX = "delete it: mixsup predict then predicts that slide again"
# Settings the models were trained with: prediction takes them from the bundle.
MODEL_SECTIONS = ("tiling", "tissue", "stain", "model", "stage1", "stage2", "mil", "abmil")
PREDICT_SETTINGS = ("runtime.*, reader.*, stage1.infer_batch_size, tissue.geojson_dir and "
                    "abmil.features")


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


def predict(bundle: BundleFile | str | Path, inputs: list[tuple[str, Path]], out: str | Path,
            cfg: Config | None = None, strict: bool = False, progress: bool = True,
            threshold: float | None = None, dist: Dist = SINGLE,
            outlines: Mapping[str, Path] | None = None) -> PredictResult:
    """Predict slides with a trained bundle: per slide its probability, prediction, maps,
    heatmap and regions, then ``predictions.csv``, ``topk.csv`` and ``predict.json`` in
    ``out``. Slides already predicted there (from the same file) are not predicted again.

    Under torchrun each rank predicts a disjoint shard of the slides; rank 0 then writes the
    tables from every slide's result file.

    Args:
        bundle: A run folder, its bundle folder or a ``read_bundle`` result.
        inputs: ``(slide_id, slide file)`` pairs (``collect_inputs``).
        out: The prediction folder.
        cfg: The configuration; default: the bundle's (``predict_config`` changes the
            device, workers or reader; the settings the models were trained with cannot
            change).
        strict: Stop at a slide that cannot be read instead of skipping it.
        progress: Show a progress bar.
        threshold: The operating threshold in [0, 1]; default: the bundle's.
        dist: This process's rank under torchrun; ``SINGLE`` for one process.
        outlines: Slide id -> tissue GeoJSON, for a bundle trained with
            ``tissue.source=geojson`` (``dataset_outlines``); a slide without one takes
            ``<tissue.geojson_dir>/<slide_id>.geojson``.

    Returns:
        The folder, one row per predicted slide and the skipped slides with the reason.

    Example:
        >>> from pathlib import Path
        >>> from mixsup import predict
        >>> result = predict("runs/r1", [("s1", Path("slides/s1.svs"))],
        ...                  "preds")  # doctest: +SKIP
        >>> result.rows[0].probability  # doctest: +SKIP
        0.93
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise MixsupError(f"threshold {threshold} is not a probability",
                          "pass --threshold between 0 and 1")
    out = Path(out)
    bf = bundle if isinstance(bundle, BundleFile) else read_bundle(bundle)
    cfg = bf.cfg if cfg is None else check_model_settings(bf, cfg)
    outlines = dict(outlines or {})
    if cfg.tissue.source == "geojson" and cfg.tissue.geojson_dir is None and not outlines:
        raise MixsupError("this bundle's models were trained on tissue outlined in GeoJSON "
                          "files (tissue.source=geojson)", "pass the new slides' outlines: a "
                          "`tissue` column in slides.csv with --data, or --set "
                          "tissue.geojson_dir=FOLDER holding <slide_id>.geojson",
                          bf.dir)
    device = pick_device(cfg.runtime, dist.local_rank)
    models = load_bundle(bf, device)
    thr = bf.threshold if threshold is None else threshold
    skipped: dict[str, str] = {}
    if dist.main and out.is_dir():
        remove_partial(out)  # a killed run's half-written stores; their slides are redone
    dist.barrier()
    slide_predictor = _SlidePredictor(models, cfg, out, device, outlines)
    for slide_id, path in progress_bar(dist.shard(list(inputs)), desc="predict",
                                       unit="slide", disable=not (progress and dist.main)):
        if _predicted(out / "slides" / f"{slide_id}.json", path):
            continue
        try:
            slide_predictor(slide_id, path, thr)
        except ModelOutputError:
            raise
        except MixsupError as exc:
            if strict:
                raise
            log.warning("skipping %s: %s", slide_id, exc)
            skipped[slide_id] = str(exc)
    for part in dist.all_gather(skipped):
        skipped.update(part)
    dist.barrier()
    rows = [replace(row, prediction=int(row.probability >= thr))
            for row in (read_record(SlidePrediction, out / "slides" / f"{sid}.json",
                                    "slide record", RECORD_FIX)
                        for sid, _ in inputs if sid not in skipped)]
    if dist.main:
        _write_tables(out, rows)
        write_json(out / "predict.json", {"operating_threshold": thr, "bundle": str(bf.dir),
                                          "mode": bf.mode.name,
                                          "selected_round": bf.meta.selected_round,
                                          "n_slides": len(rows), "skipped": skipped})
    dist.barrier()
    return PredictResult(out, rows, skipped)


def _predicted(record: Path, slide: Path) -> bool:
    """Whether ``record`` is a finished prediction of this very slide file. A record of
    another file under the same id (another test set in the same folder) or of an older
    version of it (a dataset made again) is not: that slide is predicted again."""
    try:
        stored = json.loads(record.read_text()).get("path")
        newer = record.stat().st_mtime_ns >= Path(slide).stat().st_mtime_ns
    except (OSError, ValueError, AttributeError):
        return False
    if stored == str(Path(slide).resolve()) and newer:
        return True
    log.warning("%s was predicted from another file (%s) or an older version of it; "
                "predicting it again", record.stem, stored)
    return False


def predict_config(bundle: BundleFile, files: tuple | list = (),
                   overrides: tuple | list = ()) -> Config:
    """The bundle's config with YAML files and ``key=value`` overrides on top; settings the
    models were trained with (``MODEL_SECTIONS``) cannot change here."""
    return check_model_settings(bundle, apply_overrides(bundle.meta.config, files, overrides))


def check_model_settings(bundle: BundleFile, cfg: Config) -> Config:
    """``cfg``, when it keeps every setting the bundle's models were trained with."""
    # abmil.features is where the slides' features are read, not how they were made
    # tissue.geojson_dir is where the new slides' outlines are, not how tissue is found
    kept = {"stage1": {"infer_batch_size": cfg.stage1.infer_batch_size},
            "abmil": {"features": cfg.abmil.features},
            "tissue": {"geojson_dir": cfg.tissue.geojson_dir}}
    changed = [name for name in MODEL_SECTIONS
               if getattr(cfg, name) != getattr(bundle.cfg, name).model_copy(
                   update=kept.get(name, {}))]
    if changed:
        raise MixsupError(f"the settings change {', '.join(changed)}, which the bundle's "
                          "models were trained with",
                          f"at predict time set only {PREDICT_SETTINGS}; retrain to change "
                          "the others", bundle.dir)
    return cfg


def dataset_outlines(data: str | Path | None) -> dict[str, Path]:
    """Slide id -> the ``tissue`` file of a dataset's slides.csv (none without ``data``)."""
    if not data:
        return {}
    return {r.slide_id: r.tissue for r in load_dataset(data).slides if r.tissue is not None}


def _outlines(slide_id: str, cfg: Config,
              outlines: Mapping[str, Path]) -> GeoJSONTissue | None:
    """The slide's tissue outlines where the bundle tiles from GeoJSON (``tissue_path``)."""
    if cfg.tissue.source != "geojson":
        return None
    return read_tissue_geojson(tissue_path(slide_id, outlines.get(slide_id), cfg.tissue))


class _SlidePredictor:
    """Everything one slide's prediction needs, set up once per run."""

    def __init__(self, models: Bundle, cfg: Config, out: Path, device: torch.device,
                 outlines: Mapping[str, Path]) -> None:
        self.cfg, self.out, self.outlines = cfg, out, outlines
        # The graphs a CPU backend runs are cached beside the bundle's checkpoints.
        settings = InferSettings.from_config(cfg, device, models.file.dir / "graphs")
        self.scorer = models.file.mode.scorer(models, cfg, out, settings)
        self.bundle_dir = models.file.dir
        self.stain = models.file.stain

    def __call__(self, slide_id: str, path: Path, thr: float) -> SlidePrediction:
        cfg, out = self.cfg, self.out
        with Slide(path, cfg.reader.backend, cfg.reader.mpp, cfg.reader.cache_bytes) as slide:
            tiles = tile_slide(slide, slide_id, cfg.tiling, cfg.tissue, out / "tiles",
                               given=_outlines(slide_id, cfg, self.outlines))
            source = SlideSource.of(slide_id, path, cfg.reader, self.stain)
            maps, score = self.scorer(slide_id, source, tiles)
            _check_outputs(maps, score, slide_id, self.bundle_dir)
            # the patches scored: the tiling's, or those of features made elsewhere (TRIDENT)
            n, size0 = len(maps.coords), maps.size0
            if not n:
                log.warning("%s: no tissue patch; probability set to 0", path)
            thumb, thumb_mpp = slide.thumbnail(
                png_mpp(slide.mpp, slide.dimensions, cfg.tissue.thumbnail_mpp), LONG_SIDE[1])
            ds0 = thumb_mpp / slide.mpp
            m = maps.maps.shape[-1]
            heat, count = stitch_to_zarr(out / "probmaps" / f"{slide_id}.zarr", maps.coords,
                                         maps.maps, size0, slide.dimensions,
                                         size0 / m, overview_downsample=ds0)
            heatmap_png(out / "heatmaps" / f"{slide_id}.png", thumb, heat, count > 0,
                        [(t.rank, t.x / ds0, t.y / ds0, t.size / ds0) for t in score.topk],
                        thumb_mpp, title=f"{slide_id}: probability {score.probability:.4g}")
            _regions(out / "regions" / f"{slide_id}.geojson", heat, ds0, score.topk,
                     self.scorer.region)
        row = SlidePrediction(slide_id, str(Path(path).resolve()), score.probability,
                              int(score.probability >= thr), n, score.topk)
        write_json(out / "slides" / f"{slide_id}.json", to_json(row))
        return row


def _check_outputs(maps: StoredMaps, score: SlideScore, slide_id: str, bundle: Path) -> None:
    """NaN or infinity comes from the models (weights or statistics that are not what
    training wrote), not from a slide: prediction stops instead of writing it."""
    values = [score.probability, *(t.max_pixel_prob for t in score.topk),
              *(t.patch_prob for t in score.topk if t.patch_prob is not None)]
    if not (np.isfinite(maps.max_prob).all() and np.isfinite(values).all()):
        raise ModelOutputError(f"the bundle's models gave NaN or infinite outputs on slide "
                               f"{slide_id!r}", BUNDLE_FIX, bundle)


def _regions(path: Path, heat: np.ndarray, ds0: float, topk: tuple[TopKPatch, ...],
             name: str) -> None:
    regions = [Region(name, "tumor", g)
               for g in mask_polygons(heat >= 0.5, ds0)]
    for t in topk:
        box = shapely.box(t.x, t.y, t.x + t.size, t.y + t.size)
        scores = [("rank", float(t.rank)), ("max pixel probability", t.max_pixel_prob)]
        if t.patch_prob is not None:
            scores.append(("patch probability", t.patch_prob))
        regions.append(Region(f"Top-K #{t.rank}", "ignore", box, classification="Top-K",
                              measurements=tuple(scores)))
    write_geojson(path, SlideAnnotations(tuple(regions)))


def _write_tables(out: Path, rows: list[SlidePrediction]) -> None:
    with atomic_open(out / "predictions.csv") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["slide_id", "probability", "prediction"])
        for r in rows:
            # repr: the exact value, so that re-reading it gives the same call at the threshold
            w.writerow([r.slide_id, repr(float(r.probability)), r.prediction])
    with atomic_open(out / "topk.csv") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["slide_id", "rank", "x", "y", "size_level0", "max_pixel_prob",
                    "patch_prob"])
        for r in rows:
            for t in r.topk:
                w.writerow([r.slide_id, t.rank, t.x, t.y, f"{t.size:.1f}",
                            f"{t.max_pixel_prob:.6f}",
                            "" if t.patch_prob is None else f"{t.patch_prob:.6f}"])
