"""Tile every slide of a dataset, skipping (or, with ``strict``, failing on) bad slides, and
the ``SlideSet`` of the tiled slides that scoring and training work on."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixsup.config import Config
from mixsup.dataset.tissue_geojson import given_tissue
from mixsup.errors import MixsupError, TissueFileError
from mixsup.labels.table import Dataset, SlideRecord
from mixsup.runtime.dist import SINGLE, Dist
from mixsup.runtime.progress import progress_bar
from mixsup.slides.pool import SlideSource
from mixsup.slides.reader import open_slide
from mixsup.slides.tiling import NoTissueWarning, TileSet, tile_slide
from mixsup.storage.atomic import write_json

log = logging.getLogger(__name__)


def tiling_fingerprint(cfg: Config) -> str:
    """What a slide's tiling depends on besides the slide: runs whose configs give the same
    fingerprint can share stored tilings (each stored tiling still carries its own key, which
    holds the content hash of the slide's tissue GeoJSON too)."""
    payload = {k: cfg.model_dump(mode="json")[k] for k in ("tiling", "reader")}
    payload["tissue"] = cfg.tissue.identity()
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class TilingReport:
    tiles: dict[str, TileSet] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # slide_id -> reason
    no_tissue: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        n = [len(t) for t in self.tiles.values()]
        return {
            "slides_tiled": len(self.tiles),
            "patches": int(sum(n)),
            "patches_per_slide": {k: len(v) for k, v in self.tiles.items()},
            "seconds_per_slide": {k: round(v, 3) for k, v in self.seconds.items()},
            "no_tissue": self.no_tissue,
            "skipped": self.skipped,
            "tissue_removed": {k: v.tissue_removed for k, v in self.tiles.items()
                               if v.tissue_removed},
        }


def tile_dataset(dataset: Dataset, cfg: Config, out_dir: str | Path, strict: bool = False,
                 progress: bool = True, dist: Dist = SINGLE) -> TilingReport:
    """Tile all slides into ``out_dir``; stored tilings with the same settings are reused.

    Under torchrun each rank tiles its shard first; then every rank reads all tilings.
    """
    out_dir = Path(out_dir)
    if dist.active:
        mine = Dataset(dataset.root, tuple(dist.shard(list(dataset.slides))))
        _tile_all(mine, cfg, out_dir, strict, False)
        dist.barrier()
    report = _tile_all(dataset, cfg, out_dir, strict, progress and dist.main)
    if dist.main:
        write_json(out_dir / "summary.json", report.summary())
    dist.barrier()
    return report


def _tile_all(dataset: Dataset, cfg: Config, out_dir: Path, strict: bool,
              progress: bool) -> TilingReport:
    report = TilingReport()
    bar = progress_bar(dataset.slides, desc="tiling", unit="slide", disable=not progress)
    for rec in bar:
        bar.set_postfix_str(rec.slide_id)
        start = time.perf_counter()
        given = given_tissue(rec, cfg.tissue)  # a broken tissue file stops the command
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NoTissueWarning)
                slide = open_slide(rec.path, cfg.reader.backend, cfg.reader.mpp,
                                   cfg.reader.cache_bytes)
                with slide:
                    tiles = tile_slide(slide, rec.slide_id, cfg.tiling, cfg.tissue, out_dir,
                                       given=given)
        except TissueFileError:
            raise
        except MixsupError as exc:
            if strict:
                raise
            log.warning("skipping slide %s: %s", rec.slide_id, exc)
            report.skipped[rec.slide_id] = str(exc)
            continue
        for w in caught:
            if issubclass(w.category, NoTissueWarning):
                report.no_tissue.append(rec.slide_id)
            log.warning("%s", w.message)
        report.tiles[rec.slide_id] = tiles
        report.seconds[rec.slide_id] = time.perf_counter() - start
    return report


@dataclass
class SlideSet:
    """Slides of one or more splits that have tissue, aligned by index."""

    records: list[SlideRecord]
    tilesets: list[TileSet]
    sources: list[SlideSource]
    skipped: dict[str, str]

    def labelled(self) -> dict[int, int]:
        return {i: r.label for i, r in enumerate(self.records) if r.label is not None}


def slide_set(data: Dataset, splits: tuple[str, ...], cfg: Config, tiles_dir: Path,
              strict: bool, progress: bool, dist: Dist = SINGLE) -> SlideSet:
    chosen = [r for r in data.slides if r.split in splits]
    report = tile_dataset(Dataset(data.root, tuple(chosen)), cfg, tiles_dir, strict=strict,
                          progress=progress, dist=dist)
    records, tilesets, sources = [], [], []
    for rec in chosen:
        tiles = report.tiles.get(rec.slide_id)
        if tiles is None or len(tiles) == 0:
            continue
        records.append(rec)
        tilesets.append(tiles)
        sources.append(SlideSource.of(rec.slide_id, rec.path, cfg.reader))
    skipped = dict(report.skipped)
    skipped.update({s: "no tissue" for s in report.no_tissue})
    return SlideSet(records, tilesets, sources, skipped)
