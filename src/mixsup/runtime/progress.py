"""Progress bars on a terminal; plain lines every few seconds elsewhere (CI, ``nohup``, a
cluster job's log), instead of carriage-return redraws that fill a captured log."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from mixsup.storage.atomic import write_json

PLAIN_INTERVAL_S = 10.0


class _Lines:
    """A stream for tqdm that writes each status as one line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _PlainBar(tqdm):
    """A status change (``set_postfix``) waits for the next timed line instead of writing one
    of its own: a loss updated every batch would otherwise print a line per batch."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool | None = True,
                    **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(s, refresh=False)


def progress_bar(iterable: Iterable[Any] | None = None, *, desc: str, unit: str,
                 total: int | None = None, disable: bool = False,
                 leave: bool = True) -> tqdm:
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, unit=unit, total=total, disable=disable, leave=leave)
    # leave=True so that the last status (the totals) is written as a line too
    return _PlainBar(iterable, desc=desc, unit=unit, total=total, disable=disable, leave=True,
                     file=_Lines(sys.stderr), mininterval=PLAIN_INTERVAL_S, ascii=True)


PHASES = "phases.json"


@contextmanager
def phase(folder: Path, name: str, enabled: bool = True) -> Iterator[None]:
    """Add the wall time of the block to ``name`` in ``folder/phases.json`` (seconds per
    phase of the work done in that folder: a reused round adds nothing)."""
    start = time.perf_counter()
    yield
    if not enabled:
        return
    times = read_phases(folder)  # a damaged record starts again
    times[name] = round(times.get(name, 0.0) + time.perf_counter() - start, 2)
    write_json(folder / PHASES, times)


def read_phases(folder: Path) -> dict[str, float]:
    """``phase``'s record of ``folder``; empty where there is none (or it is unreadable)."""
    try:
        times = json.loads((folder / PHASES).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(times, dict):
        return {}
    return {str(k): float(v) for k, v in times.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
