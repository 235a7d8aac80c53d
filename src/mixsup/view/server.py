"""``mixsup view``'s web server: the standard library's threading HTTP server and a few routes.

Safety: every file it serves is in a table made at start-up (the viewer's static files, and per
slide id the slide, probability map and regions that the prediction folder records). A request
only picks a key of that table; anything else is a 4xx answer, and failures are logged here and
answered with a one-line 500, never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import threading
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from mixsup.errors import MixsupError
from mixsup.heatmap import FLOOR, jet_rgb
from mixsup.user_files import parse_json, read_text
from mixsup.view.assets import STATIC, content_type, listing
from mixsup.view.catalog import SAFE_ID, Catalog, SlideEntry
from mixsup.view.deepzoom import MapTiles, SlideTiles, TileOutOfRange, TilesClosed

log = logging.getLogger(__name__)
OPEN_SLIDES = 4  # slides whose readers stay open (each holds a tile cache)
TILE = re.compile(r"/dzi/([^/]+)/(slide|overlay)_files/(\d{1,3})/(\d{1,7})_(\d{1,7})\.(jpeg|png)")
DZI = re.compile(r"/dzi/([^/]+)/(slide|overlay)\.dzi")
API_SLIDE = re.compile(r"/api/slides/([^/]+)")
PAGE_SLIDE = re.compile(r"/slide/([^/]+)")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
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
            return _json(self.slides_json()), "application/json", False
        if m := API_SLIDE.fullmatch(path):
            return _json(self.slide_json(self._entry(m[1]))), "application/json", False
        if m := DZI.fullmatch(path):
            tiles = self._layer(self._entry(m[1]), m[2])
            return tiles.dzi().encode(), "application/xml", True
        if m := TILE.fullmatch(path):
            entry = self._entry(m[1])
            for attempt in range(2):
                tiles = self._layer(entry, m[2])
                if m[6] != tiles.fmt:
                    raise HTTPError(HTTPStatus.NOT_FOUND, f"{m[2]} tiles are {tiles.fmt}")
                try:
                    with self._render:
                        body = tiles.tile(int(m[3]), int(m[4]), int(m[5]))
                    break
                except TileOutOfRange as exc:
                    raise HTTPError(HTTPStatus.NOT_FOUND, f"no such tile: {exc}") from exc
                except TilesClosed:  # evicted meanwhile: open it again, once
                    if attempt:
                        raise
            with self._open_lock:
                self.tiles_served += 1
            return body, f"image/{tiles.fmt}", True
        raise HTTPError(HTTPStatus.NOT_FOUND, "no such page")

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

    def _layer(self, entry: SlideEntry, layer: str) -> SlideTiles | MapTiles:
        tiles, overlay = self._tiles(entry)
        if layer == "slide":
            return tiles
        if overlay is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, self._map_errors.get(
                entry.slide_id, "this slide has no probability map"))
        return overlay

    def _tiles(self, entry: SlideEntry) -> tuple[SlideTiles, MapTiles | None]:
        with self._open_lock:
            if entry.slide_id in self._open:
                self._open.move_to_end(entry.slide_id)
                return self._open[entry.slide_id]
        # Opened outside the lock: a slow open (a large slide on a network disk) does not
        # hold up the tiles of the slides already open.
        try:
            tiles = SlideTiles(entry.slide_path)
        except MixsupError as exc:
            log.error("%s", exc)
            raise HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR,
                            f"slide {entry.slide_id} cannot be read; see the server's log"
                            ) from exc
        overlay = self._overlay(entry, tiles.slide.dimensions)
        with self._open_lock:
            if entry.slide_id in self._open:  # another request opened it meanwhile
                with tiles.lock:
                    tiles.close()
                return self._open[entry.slide_id]
            self._open[entry.slide_id] = (tiles, overlay)
            evicted = []
            while len(self._open) > OPEN_SLIDES:
                evicted.append(self._open.popitem(last=False)[1][0])
        for old in evicted:
            with old.lock:
                old.close()
        return tiles, overlay

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
        c = self.catalog
        return {"folder": c.pred.name, "threshold": c.threshold, "mode": c.mode,
                "metrics": c.metrics_json(), "slides": [s.summary() for s in c.slides]}

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


def _suspicious(entry: SlideEntry) -> list[dict[str, Any]]:
    """The suspicious-region polygons of the slide's GeoJSON (its top-K boxes come from the
    slide record, with their scores)."""
    if not entry.regions.is_file():
        return []
    try:
        doc = parse_json(read_text(entry.regions, "regions file"), entry.regions, "regions file")
    except MixsupError as exc:
        log.error("unreadable regions: %s", exc)
        return []
    features = doc.get("features") if isinstance(doc, dict) else None
    return [f["geometry"] for f in (features if isinstance(features, list) else [])
            if isinstance(f, dict) and isinstance(f.get("properties"), dict)
            and str(f["properties"].get("name", "")).startswith("Suspicious")
            and isinstance(f.get("geometry"), dict)
            and f["geometry"].get("type") in ("Polygon", "MultiPolygon")]


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


def _json(obj: Any) -> bytes:
    """JSON for the browser, whose parser knows no NaN: an undefined value (a metric without
    both classes, a diverged model's probability) is null."""
    return json.dumps(_nan_to_null(obj), allow_nan=False).encode()


def _nan_to_null(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_null(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


class Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = "mixsup-view"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method without a do_* handler with 501; this is read-only
        if name.startswith("do_"):
            return lambda: self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "read-only server")
        raise AttributeError(name)

    def _answer(self, send_body: bool) -> None:
        try:
            self._check_host()
            path = urlsplit(self.path).path
            if not path.startswith("/"):
                raise HTTPError(HTTPStatus.BAD_REQUEST, "malformed request target")
            body, ctype, cacheable = self.server.viewer.route(path)
        except HTTPError as exc:
            self.send_error(exc.status, str(exc))
            return
        except Exception:  # a bug or an unreadable file: logged here, one line to the client
            log.exception("error answering %s", self.path)
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the log")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "private, max-age=3600" if cacheable else "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _check_host(self) -> None:
        """On loopback, refuse other Host names: a web page elsewhere cannot rebind a name of
        its own to 127.0.0.1 and read the slides through the visitor's browser."""
        if not self.server.loopback:
            return
        host = _host_name(self.headers.get("Host") or "")
        if host not in LOOPBACK_NAMES:
            raise HTTPError(HTTPStatus.FORBIDDEN, "this viewer answers on localhost only")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _host_name(header: str) -> str:
    """The name of a Host header without its port: ``[::1]:8765`` and ``[::1]`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0]


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, viewer: Viewer, host: str, port: int) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        # Set first: a failed bind calls server_close, which closes the viewer.
        self.viewer = viewer
        self.loopback = _is_loopback(host)
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.viewer.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(catalog: Catalog, host: str = "127.0.0.1", port: int = 8765) -> ViewerServer:
    try:
        return ViewerServer(Viewer(catalog), host, port)
    except (OSError, OverflowError, UnicodeError) as exc:  # gaierror is an OSError
        why = getattr(exc, "strerror", None) or str(exc)
        raise MixsupError(f"cannot listen on {host}:{port} ({why})",
                          "pass an address of this machine as --host (default 127.0.0.1) and "
                          "a free --port (0 for any)") from exc
