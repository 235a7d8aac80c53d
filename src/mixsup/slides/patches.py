"""Patch datasets shared by training, the E-step and prediction.

Datasets hold only picklable slide descriptions; each worker process opens its own handles
lazily, so DataLoader workers never share an OpenSlide handle.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mixsup.slides.pool import SlidePool, SlideSource


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
