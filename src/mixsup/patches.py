"""Patch datasets shared by training, the E-step and prediction.

Datasets hold only picklable slide descriptions; each worker process opens its own handles
lazily, so DataLoader workers never share an OpenSlide handle.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mixsup.config import ReaderConfig
from mixsup.slides.reader import Slide


@dataclass(frozen=True)
class SlideSource:
    slide_id: str
    path: str
    backend: str = "auto"
    mpp: float | None = None  # override for slides without MPP
    cache_bytes: int = 32 * 1024 * 1024

    @classmethod
    def of(cls, slide_id: str, path: str | Path, reader: ReaderConfig) -> SlideSource:
        return cls(slide_id, str(path), reader.backend, reader.mpp, reader.cache_bytes)


class SlidePool:
    """Per-process slides: each is opened (and checked) once; only the ``max_open`` most
    recently read keep a backend handle (a file descriptor and ~0.1 MB each; an E-step over
    10,000 slides would otherwise hold 10,000). A closed handle reopens without the checks on
    its next read (0.7-4.5 ms measured), so random access over up to ``max_open`` slides, as in
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
        return self.get(idx).read_at_mpp((x, y), size, mpp)

    def where(self, idx: int, x: int, y: int) -> dict[str, str | int]:
        """A patch reference that stays meaningful outside this run (diagnostics)."""
        return {"slide_id": self.sources[idx].slide_id, "x": int(x), "y": int(y)}


class PatchReader(Dataset):
    """Patches at ``refs`` = rows of (slide index, x, y) in level-0 pixels -> uint8 HWC."""

    def __init__(self, sources: list[SlideSource], refs: np.ndarray, patch_size: int,
                 mpp: float) -> None:
        self.slides = SlidePool(sources)
        self.refs = np.asarray(refs, dtype=np.int64).reshape(-1, 3)
        self.patch_size = patch_size
        self.mpp = mpp

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> torch.Tensor:
        s, x, y = self.refs[i]
        return torch.from_numpy(self.slides.read(int(s), int(x), int(y), self.patch_size,
                                                 self.mpp))


def augment(img: np.ndarray, label: np.ndarray, valid: np.ndarray, rng: np.random.Generator,
            colour: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random flips and 90° rotations (image and labels together) and colour jitter (image)."""
    k = int(rng.integers(4))
    flip = rng.uniform() < 0.5

    def geo(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k)
        return np.ascontiguousarray(a[:, ::-1] if flip else a)

    img, label, valid = geo(img), geo(label), geo(valid)
    if colour:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-4, 5))) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.85, 1.15), 0, 255)
        img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
        mean = img.mean()
        img = (img - mean) * rng.uniform(0.85, 1.15) + mean * rng.uniform(0.9, 1.1)
        img = np.clip(img, 0, 255).astype(np.uint8)
    return img, label, valid
