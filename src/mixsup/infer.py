"""Run θ1 over patches of a slide: the one inference path used by the E-step, the MIL
baseline, prediction and the heatmaps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from mixsup.patches import PatchReader, SlideSource
from mixsup.runtime import autocast, to_input


@dataclass
class PatchMaps:
    """Per-patch reduced-resolution probability maps and each patch's max probability."""

    maps: np.ndarray  # (N, m, m) float16
    max_prob: np.ndarray  # (N,) float32


def make_loader(dataset, batch_size: int, num_workers: int, device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=device.type == "cuda",
                      prefetch_factor=4 if num_workers > 0 else None,
                      persistent_workers=False)


@torch.inference_mode()
def infer_patches(model: torch.nn.Module, source: SlideSource, coords: np.ndarray,
                  patch_size: int, mpp: float, map_downsample: int, device: torch.device,
                  batch_size: int = 64, num_workers: int = 0, amp: bool = True,
                  channels_last: bool = True, progress: bool = False) -> PatchMaps:
    model.eval()
    n = len(coords)
    m = max(1, patch_size // map_downsample)
    maps = np.zeros((n, m, m), dtype=np.float16)
    max_prob = np.zeros(n, dtype=np.float32)
    if n == 0:
        return PatchMaps(maps, max_prob)
    refs = np.column_stack([np.zeros(n, np.int64), np.asarray(coords, np.int64)])
    loader = make_loader(PatchReader([source], refs, patch_size, mpp), batch_size,
                         num_workers, device)
    i = 0
    bar = tqdm(total=n, desc=f"infer {source.slide_id}", unit="patch", disable=not progress,
               leave=False)
    for batch in loader:
        x = to_input(batch, device, channels_last)
        with autocast(device, amp):
            logits = model(x)
        prob = torch.sigmoid(logits.float())
        b = prob.shape[0]
        max_prob[i:i + b] = prob.amax(dim=(1, 2, 3)).cpu().numpy()
        small = F.adaptive_avg_pool2d(prob, m) if m != prob.shape[-1] else prob
        maps[i:i + b] = small[:, 0].cpu().numpy().astype(np.float16)
        i += b
        bar.update(b)
    bar.close()
    return PatchMaps(maps, max_prob)
