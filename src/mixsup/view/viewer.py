"""``mixsup view``'s routes: which answer a request path gets, from the table of slides,
maps and overlays made at start-up (a request only picks a key of that table), with tiles
cut on demand and JSON that never holds NaN or Infinity, which browsers cannot parse."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections import Counter, OrderedDict
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import numpy as np

from mixsup.errors import MixsupError
from mixsup.render.heatmap import FLOOR, jet_rgb
from mixsup.storage.user_files import parse_json, read_text
from mixsup.view.assets import STATIC, content_type, listing
from mixsup.view.catalog import SAFE_ID, Catalog, SlideEntry
from mixsup.view.deepzoom import MapTiles, SlideTiles, TileOutOfRange, TilesClosed

log = logging.getLogger(__name__)
OPEN_SLIDES = 4  # slides whose readers stay open (each holds a tile cache)
TILE = re.compile(r"/dzi/([^/]+)/(slide|overlay)_files/(\d{1,3})/(\d{1,7})_(\d{1,7})\.(jpeg|png)")
DZI = re.compile(r"/dzi/([^/]+)/(slide|overlay)\.dzi")
API_SLIDE = re.compile(r"/api/slides/([^/]+)")
PAGE_SLIDE = re.compile(r"/slide/([^/]+)")
COLORBAR_LEVELS = np.linspace(0, 255, 11).astype(np.uint8)[:, None]  # colour bar stops


class HTTPError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class Viewer:
    """The routes' state: the catalog, the static files and the open slides (an LRU)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.static = listing(STATIC)
        self._open: OrderedDict[str, tuple[SlideTiles, MapTiles | None]] = OrderedDict()
        self._open_lock = threading.Lock()
        # Bounds the decoded regions held at once, whatever the number of client threads.
        self._render = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))
        self.tiles_served = 0
        self._truth: dict[str, dict[str, Any] | None] = {}  # read once per slide
        self._truth_lock = threading.Lock()
        self._map_errors: dict[str, str] = {}  # slide id -> why its map is not shown
        self._missing: set[str] | None = None  # slide ids whose file is not there
        # Readers reading a tile now, by slide; one evicted meanwhile is closed by its last.
        self._readers: Counter[SlideTiles] = Counter()
        self._retired: set[SlideTiles] = set()

    def close(self) -> None:
        with self._open_lock:
            for tiles, _ in self._open.values():
                tiles.close()
            self._open.clear()

    # -- routing ----------------------------------------------------------------------------
    def route(self, path: str) -> tuple[bytes, str, bool]:
        """(body, content type, cacheable) for a GET of ``path``; raises HTTPError."""
        if path == "/":
            return self._static("index.html")
        if m := PAGE_SLIDE.fullmatch(path):
            self._entry(m[1])
            return self._static("slide.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path == "/api/slides":
            return json_bytes(self.slides_json()), "application/json", False
        if m := API_SLIDE.fullmatch(path):
            return json_bytes(self.slide_json(self._entry(m[1]))), "application/json", False
        if m := DZI.fullmatch(path):
            entry = self._entry(m[1])
            tiles = self._layer(entry, m[2], self._tiles(entry))
            return tiles.dzi().encode(), "application/xml", True
        if m := TILE.fullmatch(path):
            body = self._tile(self._entry(m[1]), m[2], m[6], int(m[3]), int(m[4]), int(m[5]))
            return body, f"image/{m[6]}", True
        raise HTTPError(HTTPStatus.NOT_FOUND, "no such page")

    def _tile(self, entry: SlideEntry, layer: str, fmt: str, level: int, col: int,
              row: int) -> bytes:
        pair = self._tiles(entry, read=True)
        try:
            tiles = self._layer(entry, layer, pair)
            if fmt != tiles.fmt:
                raise HTTPError(HTTPStatus.NOT_FOUND, f"{layer} tiles are {tiles.fmt}")
            with self._render:
                body = tiles.tile(level, col, row)
        except TileOutOfRange as exc:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no such tile: {exc}") from exc
        except TilesClosed as exc:  # only while the server stops
            raise HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, "the viewer is stopping") from exc
        finally:
            self._done_reading(pair[0])
        with self._open_lock:
            self.tiles_served += 1
        return body

    def _static(self, name: str) -> tuple[bytes, str, bool]:
        path = self.static.get(name)
        if path is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, "no such file")
        return path.read_bytes(), content_type(path), False

    def _entry(self, raw_id: str) -> SlideEntry:
        slide_id = unquote(raw_id)
        entry = self.catalog.get(slide_id) if SAFE_ID.fullmatch(slide_id) else None
        if entry is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, "no such slide in this prediction folder")
        return entry

    def _layer(self, entry: SlideEntry, layer: str,
               pair: tuple[SlideTiles, MapTiles | None]) -> SlideTiles | MapTiles:
        tiles, overlay = pair
        if layer == "slide":
            return tiles
        if overlay is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, self._map_errors.get(
                entry.slide_id, "this slide has no probability map"))
        return overlay

    def _tiles(self, entry: SlideEntry,
               read: bool = False) -> tuple[SlideTiles, MapTiles | None]:
        """The slide's open readers; with ``read``, kept open (though evicted) until the
        caller's ``_done_reading``."""
        with self._open_lock:
            if entry.slide_id in self._open:
                self._open.move_to_end(entry.slide_id)
                return self._reading(self._open[entry.slide_id], read)
        tiles = self._open_slide(entry)
        overlay = self._overlay(entry, tiles.slide.dimensions)
        with self._open_lock:
            duplicate = entry.slide_id in self._open  # another request opened it meanwhile
            if not duplicate:
                self._open[entry.slide_id] = (tiles, overlay)
            pair = self._reading(self._open[entry.slide_id], read)
            evicted = [] if duplicate else self._evict()
        for old in [tiles] if duplicate else evicted:
            with old.lock:
                old.close()
        return pair

    def _open_slide(self, entry: SlideEntry) -> SlideTiles:
        # Opened outside the lock: a slow open (a large slide on a network disk) does not
        # hold up the tiles of the slides already open.
        if not entry.slide_path.is_file():  # gone since start-up, or since predict
            self.missing().add(entry.slide_id)
            raise HTTPError(HTTPStatus.NOT_FOUND, missing_message(entry))
        self.missing().discard(entry.slide_id)
        try:
            return SlideTiles(entry.slide_path)
        except MixsupError as exc:
            log.error("%s", exc)
            raise HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR,
                            f"slide {entry.slide_id} cannot be read; see the server's log"
                            ) from exc

    def missing(self) -> set[str]:
        """The slides whose file is not there: at start-up, then as found when opened."""
        with self._open_lock:
            if self._missing is None:
                self._missing = {s.slide_id for s in self.catalog.slides if s.missing}
            return self._missing

    def _reading(self, pair: tuple[SlideTiles, MapTiles | None],
                 read: bool) -> tuple[SlideTiles, MapTiles | None]:
        """Call with ``_open_lock`` held."""
        if read:
            self._readers[pair[0]] += 1
        return pair

    def _evict(self) -> list[SlideTiles]:
        """The least recently used slides past OPEN_SLIDES that nobody reads now, to close
        (call with ``_open_lock`` held). One being read is closed by its last reader: closing
        it under a reader's feet failed the reader's tile."""
        idle = []
        while len(self._open) > OPEN_SLIDES:
            old = self._open.popitem(last=False)[1][0]
            if self._readers[old]:
                self._retired.add(old)
            else:
                idle.append(old)
        return idle

    def _done_reading(self, tiles: SlideTiles) -> None:
        with self._open_lock:
            self._readers[tiles] -= 1
            if self._readers[tiles] > 0:
                return
            del self._readers[tiles]
            if tiles not in self._retired:
                return
            self._retired.discard(tiles)
        with tiles.lock:
            tiles.close()

    def _overlay(self, entry: SlideEntry, dims: tuple[int, int]) -> MapTiles | None:
        """The slide's probability map; a broken one is the map's fault, not the slide's: the
        slide is shown without it and the map's layer answers why."""
        if not entry.probmap.is_dir():
            return None
        try:
            return MapTiles(entry.probmap, dims)
        except Exception as exc:  # zarr and a hand-edited store raise many types
            why = exc.what if isinstance(exc, MixsupError) else type(exc).__name__
            log.error("%s: unreadable probability map (%s)", entry.probmap, why)
            self._map_errors[entry.slide_id] = f"its probability map cannot be read ({why})"
            return None

    def _annotations(self, entry: SlideEntry, dims: tuple[int, int]) -> dict[str, Any] | None:
        # Under the lock: one reading per slide, however many clients ask at once (a mask
        # image is decoded and traced).
        with self._truth_lock:
            if entry.slide_id not in self._truth:
                self._truth[entry.slide_id] = slide_annotations(entry, dims)
            return self._truth[entry.slide_id]

    # -- JSON -------------------------------------------------------------------------------
    def slides_json(self) -> dict[str, Any]:
        c, missing = self.catalog, self.missing()
        return {"folder": c.pred.name, "threshold": c.threshold, "mode": c.mode,
                "metrics": c.metrics_json(),
                "slides": [s.summary() | {"missing": s.slide_id in missing} for s in c.slides]}

    def slide_json(self, entry: SlideEntry) -> dict[str, Any]:
        tiles, overlay = self._tiles(entry)
        w, h = tiles.slide.dimensions
        base = f"/dzi/{entry.slide_id}"
        return {
            **entry.summary(), "threshold": self.catalog.threshold, "mode": self.catalog.mode,
            "width": w, "height": h, "mpp": tiles.mpp, "slide_dzi": f"{base}/slide.dzi",
            "overlay_error": self._map_errors.get(entry.slide_id),
            "overlay": None if overlay is None else {
                "dzi": f"{base}/overlay.dzi", "floor": FLOOR,
                # The map's last cell reaches past the slide's edge: its width in slide units.
                "width": overlay.pyramid.dimensions[0] * overlay.downsample / w},
            "topk": list(entry.topk), "regions": _suspicious(entry),
            "annotations": self._annotations(entry, (w, h)),
            "colorbar": jet_rgb(COLORBAR_LEVELS).reshape(-1, 3).tolist(),
        }


def missing_message(entry: SlideEntry) -> str:
    return (f"the slide file of slide {entry.slide_id} ({entry.slide_path.name}) is missing: "
            "moved or deleted since the prediction")


def _suspicious(entry: SlideEntry) -> list[dict[str, Any]]:
    """The suspicious-region polygons of the slide's GeoJSON (its top-K boxes come from the
    slide record, with their scores). A damaged file is left out whole: the slide opens
    without it."""
    if not entry.regions.is_file():
        return []
    try:
        doc = parse_json(read_text(entry.regions, "regions file"), entry.regions, "regions file")
    except MixsupError as exc:
        log.warning("unreadable regions, not shown: %s", exc)
        return []
    features = doc.get("features") if isinstance(doc, dict) else None
    shapes = [f["geometry"] for f in (features if isinstance(features, list) else [])
              if isinstance(f, dict) and isinstance(f.get("properties"), dict)
              and str(f["properties"].get("name", "")).startswith("Suspicious")
              and isinstance(f.get("geometry"), dict)
              and f["geometry"].get("type") in ("Polygon", "MultiPolygon")]
    if not all(map(_finite_numbers, shapes)):
        log.warning("%s: a suspicious region holds a number that is not finite (NaN, Infinity "
                    "or past a float's range); the regions are not shown", entry.regions)
        return []
    return shapes


def _finite_numbers(value: Any) -> bool:
    """Whether every number in a JSON value is finite as a float (Python's JSON reader takes
    NaN, Infinity and 1e999; browsers' readers take none of them)."""
    if isinstance(value, dict):
        return all(map(_finite_numbers, value.values()))
    if isinstance(value, list):
        return all(map(_finite_numbers, value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return math.isfinite(value)
        except OverflowError:  # an integer past a float's range
            return False
    return True


def slide_annotations(entry: SlideEntry, dims: tuple[int, int]) -> dict[str, Any] | None:
    """The dataset's pixel labels of the slide (with --data): tumour and ROI outlines as
    GeoJSON geometries, or why they could not be read (the default class map and mask values
    apply: the viewer has no config)."""
    if entry.annotation is None:
        return None
    from shapely.geometry import mapping

    from mixsup.labels.annotations import read_annotations

    def geoms(shapes: list[Any]) -> list[dict[str, Any]]:
        # a level-0 pixel of tolerance: what a screen shows, at a fraction of the vertices
        return [mapping(g.simplify(1.0)) for g in shapes if not g.is_empty]

    try:
        ann = read_annotations(entry.annotation, slide_dimensions=dims)
        return {"file": entry.annotation.name, "error": None, "tumor": geoms([ann.tumor]),
                "roi": geoms(ann.of_role("roi"))}
    except MixsupError as exc:
        why = exc.what
    except Exception as exc:  # the slide page must open whatever the file holds
        log.error("%s: unreadable annotations (%s: %s)", entry.annotation,
                  type(exc).__name__, exc)
        why = f"unreadable ({type(exc).__name__})"
    return {"file": entry.annotation.name, "error": why, "tumor": [], "roi": []}


def json_bytes(obj: Any) -> bytes:
    """JSON for the browser, whose parser knows no NaN nor Infinity: an undefined value (a
    metric without both classes, a diverged model's probability) is null."""
    return json.dumps(_finite_or_null(obj), allow_nan=False).encode()


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value
