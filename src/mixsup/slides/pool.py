"""Slides as picklable descriptions (``SlideSource``) and the per-process handles opened from
them (``SlidePool``); torch-free, so that tiling does not import torch.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixsup.config import READER_CACHE_BYTES, ReaderConfig
from mixsup.slides.reader import Slide
from mixsup.slides.stain_normalise import StainReference


@dataclass(frozen=True)
class SlideSource:
    slide_id: str
    path: str
    backend: str = "auto"
    mpp: float | None = None  # override for slides without MPP
    cache_bytes: int = READER_CACHE_BYTES
    stain: StainReference | None = None  # every patch read is mapped onto this stain

    @classmethod
    def of(cls, slide_id: str, path: str | Path, reader: ReaderConfig,
           stain: StainReference | None = None) -> SlideSource:
        return cls(slide_id, str(path), reader.backend, reader.mpp, reader.cache_bytes, stain)


class SlidePool:
    """Per-process slides: each is opened (and checked) once; only the ``max_open`` most
    recently read keep a backend handle (a file descriptor and ~0.1 MB each; an E-step over
    10,000 slides would otherwise hold 10,000). A closed handle reopens without the checks on
    its next read (a few ms), so random access over up to ``max_open`` slides, as in
    training, never pays it."""

    def __init__(self, sources: list[SlideSource], max_open: int = 128) -> None:
        self.sources = sources
        self.max_open = max_open
        self._slides: dict[int, Slide] = {}
        self._recent: OrderedDict[int, None] = OrderedDict()

    def __getstate__(self) -> dict:
        return {"sources": self.sources, "max_open": self.max_open, "_slides": {},
                "_recent": OrderedDict()}

    def get(self, idx: int) -> Slide:
        slide = self._slides.get(idx)
        if slide is None:
            s = self.sources[idx]
            slide = Slide(s.path, backend=s.backend, mpp=s.mpp, cache_bytes=s.cache_bytes)
            self._slides[idx] = slide
        self._recent[idx] = None
        self._recent.move_to_end(idx)
        while len(self._recent) > self.max_open:
            oldest, _ = self._recent.popitem(last=False)
            self._slides[oldest].close()
        return slide

    def open_handles(self) -> int:
        return sum(s.is_open for s in self._slides.values())

    def read(self, idx: int, x: int, y: int, size: int, mpp: float) -> np.ndarray:
        img = self.get(idx).read_at_mpp((x, y), size, mpp)
        stain = self.sources[idx].stain
        return img if stain is None else stain.apply(img)

    def close(self) -> None:
        for slide in self._slides.values():
            slide.close()
        self._slides.clear()
        self._recent.clear()

    def where(self, idx: int, x: int, y: int) -> dict[str, str | int]:
        """A patch reference that stays meaningful outside this run (diagnostics)."""
        return {"slide_id": self.sources[idx].slide_id, "x": int(x), "y": int(y)}
