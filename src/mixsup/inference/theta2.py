"""θ2's slide score: the mean of its probabilities over the slide's top-K patches (by θ1's max
pixel probability)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mixsup.dataset.tiles import SlideSet
from mixsup.inference.cpu_backend import inference_model
from mixsup.inference.map_store import StoredMaps
from mixsup.inference.settings import InferSettings
from mixsup.inference.topk import top_k
from mixsup.runtime.device import autocast, loader_workers, to_input
from mixsup.slides.patches import SlidePool, SlideSource, augment


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


def patch_probs(model: torch.nn.Module, patches: torch.Tensor, valid: torch.Tensor,
                device: torch.device, amp: bool, channels_last: bool) -> torch.Tensor:
    """θ2's probability for each of the (B, K) patches; padded slots get 0.

    Only the valid patches reach the model: white padding would otherwise enter BatchNorm's
    batch statistics in training and in the BN recalibration.
    """
    b, k = patches.shape[:2]
    keep = valid.reshape(b * k).bool()
    x = to_input(patches.reshape(b * k, *patches.shape[2:])[keep.to(patches.device)], device,
                 channels_last)
    with autocast(device, amp):
        probs = torch.sigmoid(model(x).float().reshape(-1))
    out = torch.zeros(b * k, device=probs.device, dtype=probs.dtype)
    return out.masked_scatter(keep.to(probs.device), probs).reshape(b, k)


def mean_of_valid(probs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The slide probability: the mean over each slide's real (unpadded) patches."""
    v = valid.to(probs.device).float()
    return (probs * v).sum(1) / v.sum(1).clamp(min=1.0)


def slide_probs(model: torch.nn.Module, patches: torch.Tensor, valid: torch.Tensor,
                device: torch.device, amp: bool, channels_last: bool) -> torch.Tensor:
    return mean_of_valid(patch_probs(model, patches, valid, device, amp, channels_last), valid)


@torch.inference_mode()
def score_slides(model: torch.nn.Module, dataset: TopKPatches, settings: InferSettings,
                 batch_slides: int = 4) -> np.ndarray:
    """θ2's slide probability (mean over the top-K patches) of every slide of ``dataset``."""
    model.eval()
    net = inference_model(model, settings, dataset.patch_size)
    loader = DataLoader(dataset, batch_size=batch_slides, shuffle=False,
                        num_workers=loader_workers(settings.num_workers))
    out = [slide_probs(net, p, v, settings.device, settings.amp,
                       settings.channels_last).cpu() for p, v, _ in loader]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def topk_dataset(slides: SlideSet, maps: dict[int, StoredMaps], indices: list[int],
                 k: int, augment: bool = False, seed: int = 0) -> TopKPatches:
    """The top-K patches (by θ1's stored max probabilities) of the slides ``indices``."""
    coords = [maps[i].coords[top_k(maps[i].max_prob, k)] for i in indices]
    labels = [slides.records[i].label or 0 for i in indices]
    t = slides.tilesets[indices[0]]
    return TopKPatches([slides.sources[i] for i in indices], coords, labels, k, t.patch_size,
                       t.mpp, augment=augment, seed=seed)
