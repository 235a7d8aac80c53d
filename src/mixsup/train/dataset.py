"""The training set of θ1: the three pools concatenated, each patch with a label and a mask."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mixsup.labels.regions import IGNORE, POSITIVE, SlideAnnotations
from mixsup.slides.patches import SlidePool, SlideSource, augment
from mixsup.train.pools import Pools
from mixsup.train.pseudo import annotation_wins, pseudo_target

FINE, PSEUDO, NEGATIVE = 0, 1, 2
POOL_NAMES = ("fine", "pseudo_positive", "hard_negative")


class MixedPatches(Dataset):
    """Index ``i`` runs over fine, then pseudo-positive, then hard-negative rows.

    Items are (uint8 HWC image, float target HW, float valid HW).
    """

    def __init__(self, sources: list[SlideSource], pools: Pools,
                 annotations: dict[int, SlideAnnotations], patch_size: int, mpp: float,
                 reweight: float, floor: float, augment: bool, seed: int = 0,
                 pseudo_kind: str = "soft") -> None:
        self.slides = SlidePool(sources)
        self.refs = np.concatenate([pools.fine, pools.pseudo, pools.negative]).astype(np.int64)
        self.kinds = np.repeat([FINE, PSEUDO, NEGATIVE], pools.sizes)
        self.pseudo_start = len(pools.fine)
        self.pseudo_maps = pools.pseudo_maps
        self.annotations = annotations
        self.patch_size, self.mpp = patch_size, mpp
        self.reweight, self.floor, self.pseudo_kind = reweight, floor, pseudo_kind
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.refs)

    def describe(self, indices: list[int]) -> list[dict[str, str | int]]:
        return [self.slides.where(*(int(v) for v in self.refs[i]))
                | {"pool": POOL_NAMES[self.kinds[i]]} for i in indices]

    def label(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        p = self.patch_size
        s, x, y = (int(v) for v in self.refs[i])
        kind = self.kinds[i]
        if kind == FINE:
            mask = self._annotation(s, x, y)
            return (mask == POSITIVE).astype(np.float32), (mask != IGNORE).astype(np.float32)
        if kind == PSEUDO:
            small = np.asarray(self.pseudo_maps[i - self.pseudo_start], dtype=np.float32)
            prob = cv2.resize(small, (p, p), interpolation=cv2.INTER_LINEAR)
            target, valid = pseudo_target(prob, self.reweight, self.floor, self.pseudo_kind)
        else:
            target, valid = np.zeros((p, p), np.float32), np.ones((p, p), np.float32)
        if s in self.annotations:  # the pixel labels win where they say something
            target, valid = annotation_wins(target, valid, self._annotation(s, x, y))
        return target, valid

    def _annotation(self, s: int, x: int, y: int) -> np.ndarray:
        ds = self.mpp / self.slides.get(s).mpp
        return self.annotations[s].rasterize(x, y, self.patch_size, self.patch_size, ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s, x, y = (int(v) for v in self.refs[i])
        img = self.slides.read(s, x, y, self.patch_size, self.mpp)
        target, valid = self.label(i)
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            img, target, valid = augment(img, target, valid, rng)
        return torch.from_numpy(img), torch.from_numpy(target), torch.from_numpy(valid)
