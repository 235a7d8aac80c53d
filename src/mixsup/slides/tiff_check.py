"""A TIFF's structure checked before any backend decodes it: every page's tile (or strip)
offsets and byte counts agree in number and lie inside the file.

Backends read such files anyway: tifffile logs "invalid page offset" and returns what it
found, OpenSlide reads whatever bytes are there, and a truncated download tiles "fine" into
patches of garbage or blank. Tables and offsets are small, so this costs milliseconds.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mixsup.errors import SlideReadError

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_FIX = ("the file is truncated or corrupt: download or export it again, or drop it from "
        "slides.csv")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_tiff(path: str | Path) -> None:
    """Raise ``SlideReadError`` where a TIFF-family file (SVS, tiled TIFF...) is truncated or
    its tile tables are inconsistent; other files pass untouched."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) not in TIFF_MAGIC:
                return
    except OSError as exc:  # /proc/self/mem, a file without read permission...
        raise SlideReadError(f"cannot read the slide file ({exc.strerror or exc})",
                             "check the path and permissions", path) from exc
    import tifffile

    size = os.path.getsize(path)
    logger = logging.getLogger("tifffile")
    collect = _Collect()
    logger.addHandler(collect)
    propagate, logger.propagate = logger.propagate, False  # reported below, not logged
    try:
        with tifffile.TiffFile(path) as tif:
            problems = [p for i, page in enumerate(tif.pages) for p in _page(page, i, size)]
    except Exception as exc:  # tifffile raises many types on broken files
        problems = [f"{type(exc).__name__}: {exc}"]
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate
    problems += [m for m in collect.messages if "offset" in m or "ByteCounts" in m]
    if problems:
        raise SlideReadError(f"broken TIFF structure ({'; '.join(problems[:3])})", _FIX, path)


def _page(page: Any, index: int, size: int) -> list[str]:
    tags = getattr(page, "tags", None)
    if tags is None:  # a TiffFrame: its tables are the key page's layout, checked there
        return []
    offsets = tags.get("TileOffsets") or tags.get("StripOffsets")
    counts = tags.get("TileByteCounts") or tags.get("StripByteCounts")
    if offsets is None and counts is None:
        return []
    if offsets is None or counts is None:
        return [f"page {index} lacks its {'offsets' if offsets is None else 'byte counts'}"]
    offs, cnts = _values(offsets.value), _values(counts.value)
    if len(offs) != len(cnts):
        return [f"page {index} has {len(offs)} data offsets but {len(cnts)} byte counts"]
    past = sum(1 for o, c in zip(offs, cnts, strict=True) if c and o + c > size)
    if past:
        return [f"page {index}: {past} tile(s) or strip(s) end past the end of the file "
                f"({size:,} bytes)"]
    return []


def _values(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, tuple | list) else [int(value)]
