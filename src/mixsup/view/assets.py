"""The viewer's static files: its own pages, and OpenSeadragon fetched by a build step.

Both are listed once at start-up; a request names one of the listed files or gets a 404.
"""

from __future__ import annotations

from pathlib import Path

from mixsup.errors import MixsupError

STATIC = Path(__file__).with_name("static")
# `make viewer-assets` unpacks OpenSeadragon's npm package here (git-ignored).
OSD_DIR = STATIC / "vendor" / "openseadragon"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".png": "image/png",
                 ".map": "application/json"}


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix, "application/octet-stream")


def listing(root: Path) -> dict[str, Path]:
    """Every servable file under ``root``, keyed by its relative URL path."""
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in CONTENT_TYPES}


def osd_files(require: bool = True) -> dict[str, Path]:
    files = listing(OSD_DIR)
    if require and "openseadragon.min.js" not in files:
        raise MixsupError(
            "OpenSeadragon, the viewer's deep-zoom library, is not installed",
            "in a source checkout run `make viewer-assets` (needs npm); elsewhere run "
            "`npm pack openseadragon@5.0.1` and unpack the tarball's package/build/"
            f"openseadragon/ folder into {OSD_DIR}", OSD_DIR)
    return files
