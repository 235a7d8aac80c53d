"""Stage 2: θ2 scores each slide's top-K patches; the slide probability is their mean."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mixsup.config import RuntimeConfig
from mixsup.patches import SlidePool, SlideSource, augment
from mixsup.runtime import autocast, to_input
from mixsup.train.loss import smooth

EPS = 1e-6


class TopKPatches(Dataset):
    """Item = one slide: (K, P, P, 3) uint8 patches, (K,) validity, label.

    Slides with fewer than K patches are padded; padded entries are masked out of the mean.
    """

    def __init__(self, sources: list[SlideSource], coords: list[np.ndarray],
                 labels: list[int], k: int, patch_size: int, mpp: float,
                 augment: bool = False, seed: int = 0) -> None:
        self.slides = SlidePool(sources)
        self.coords = [np.asarray(c, np.int64).reshape(-1, 2)[:k] for c in coords]
        self.labels = labels
        self.k, self.patch_size, self.mpp = k, patch_size, mpp
        self.augment, self.seed, self.epoch = augment, seed, 0

    def __len__(self) -> int:
        return len(self.coords)

    def describe(self, indices: list[int]) -> list[dict[str, Any]]:
        return [{"slide_id": self.slides.sources[i].slide_id, "label": int(self.labels[i]),
                 "patches": self.coords[i].tolist()} for i in indices]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.patch_size
        out = np.full((self.k, p, p, 3), 255, np.uint8)
        valid = np.zeros(self.k, bool)
        rng = np.random.default_rng((self.seed, self.epoch, i))
        for j, (x, y) in enumerate(self.coords[i]):
            img = self.slides.read(i, int(x), int(y), p, self.mpp)
            if self.augment:
                dummy = np.zeros((p, p), np.float32)
                img, _, _ = augment(img, dummy, dummy, rng)
            out[j] = img
            valid[j] = True
        return (torch.from_numpy(out), torch.from_numpy(valid),
                torch.tensor(float(self.labels[i])))


class BalancedSlideSampler(Sampler[list[int]]):
    """Batches with equal numbers of positive and negative slides.

    With an odd ``slides_per_batch`` the odd slot alternates between the classes from step to
    step (counted across epochs, shifted by rank), so positives and negatives drawn so far
    never differ by more than one.
    """

    def __init__(self, labels: list[int], slides_per_batch: int, steps: int,
                 seed: int = 0, rank: int = 0) -> None:
        self.pos = [i for i, y in enumerate(labels) if y == 1]
        self.neg = [i for i, y in enumerate(labels) if y == 0]
        if not self.pos or not self.neg:
            raise ValueError("stage 2 needs positive and negative training slides")
        self.slides_per_batch = slides_per_batch
        self.steps, self.seed, self.epoch, self.rank = steps, seed, 0, rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch, self.rank))
        pos, neg = _cycle(rng, self.pos), _cycle(rng, self.neg)
        for step in range(self.steps):
            odd = (self.epoch * self.steps + step + self.rank) % 2
            n_pos = self.slides_per_batch // 2 + (self.slides_per_batch % 2) * (1 - odd)
            n_neg = self.slides_per_batch - n_pos
            yield [next(pos) for _ in range(n_pos)] + [next(neg) for _ in range(n_neg)]


def _cycle(rng: np.random.Generator, items: list[int]) -> Iterator[int]:
    while True:
        yield from (items[j] for j in rng.permutation(len(items)))


def patch_probs(model: torch.nn.Module, patches: torch.Tensor, valid: torch.Tensor,
                device: torch.device, runtime: RuntimeConfig) -> torch.Tensor:
    """θ2's probability for each of the (B, K) patches; padded slots get 0.

    Only the valid patches reach the model: white padding would otherwise enter BatchNorm's
    batch statistics in training and in the BN recalibration.
    """
    b, k = patches.shape[:2]
    keep = valid.reshape(b * k).bool()
    x = to_input(patches.reshape(b * k, *patches.shape[2:])[keep.to(patches.device)], device,
                 runtime.channels_last)
    with autocast(device, runtime.amp):
        probs = torch.sigmoid(model(x).float().reshape(-1))
    out = torch.zeros(b * k, device=probs.device, dtype=probs.dtype)
    return out.masked_scatter(keep.to(probs.device), probs).reshape(b, k)


def mean_of_valid(probs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The slide probability: the mean over each slide's real (unpadded) patches."""
    v = valid.to(probs.device).float()
    return (probs * v).sum(1) / v.sum(1).clamp(min=1.0)


def slide_probs(model: torch.nn.Module, patches: torch.Tensor, valid: torch.Tensor,
                device: torch.device, runtime: RuntimeConfig) -> torch.Tensor:
    return mean_of_valid(patch_probs(model, patches, valid, device, runtime), valid)


def stage2_loss(model: torch.nn.Module, batch: Any, device: torch.device,
                runtime: RuntimeConfig, smoothing: float = 0.0) -> torch.Tensor:
    patches, valid, label = batch
    prob = slide_probs(model, patches, valid, device, runtime).clamp(EPS, 1 - EPS)
    y = smooth(label.to(device).float(), smoothing)
    # Written out: F.binary_cross_entropy raises on NaN inputs instead of returning NaN, which
    # ``fit`` turns into NonFiniteLoss with the batch saved.
    return -(y * prob.log() + (1 - y) * (1 - prob).log()).mean()


@torch.inference_mode()
def score_slides(model: torch.nn.Module, dataset: TopKPatches, device: torch.device,
                 runtime: RuntimeConfig, batch_slides: int = 4) -> np.ndarray:
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_slides, shuffle=False,
                        num_workers=runtime.num_workers)
    out = [slide_probs(model, p, v, device, runtime).cpu() for p, v, _ in loader]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def bce(probs: np.ndarray, labels: list[int] | np.ndarray) -> float:
    p = np.clip(np.asarray(probs, np.float64), EPS, 1 - EPS)
    y = np.asarray(labels, np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()) if len(p) else float("nan")
