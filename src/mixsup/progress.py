"""Progress bars on a terminal; plain lines every few seconds elsewhere (CI, ``nohup``, a
cluster job's log), instead of carriage-return redraws that fill a captured log."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

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


def progress_bar(iterable: Iterable[Any] | None = None, *, desc: str, unit: str,
                 total: int | None = None, disable: bool = False,
                 leave: bool = True) -> tqdm:
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, unit=unit, total=total, disable=disable, leave=leave)
    # leave=True so that the last status (the totals) is written as a line too
    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=disable, leave=True,
                file=_Lines(sys.stderr), mininterval=PLAIN_INTERVAL_S, ascii=True)
