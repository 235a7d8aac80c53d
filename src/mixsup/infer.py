"""Run a model over the patches of slides: the one inference path used by the E-step, the MIL
baseline, prediction and the heatmaps. Segmenters give a probability map per patch; patch
classifiers give one probability (a 1x1 map)."""

from __future__ import annotations

from collections.abc import Iterator
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


def infer_slides_iter(model: torch.nn.Module, sources: list[SlideSource],
                      jobs: list[tuple[int, np.ndarray]], patch_size: int, mpp: float,
                      map_downsample: int, device: torch.device, batch_size: int = 64,
                      num_workers: int = 0, amp: bool = True, channels_last: bool = True,
                      progress: bool = False, desc: str = "infer"
                      ) -> Iterator[tuple[int, PatchMaps]]:
    """Yield (slide index, maps) for each job (slide index, level-0 coords) as it completes.

    All jobs share one DataLoader, so worker processes start once, not once per slide.
    """
    model.eval()
    m = max(1, patch_size // map_downsample)
    sizes = [len(c) for _, c in jobs]
    refs = np.concatenate([np.column_stack([np.full(len(c), s, np.int64),
                                            np.asarray(c, np.int64).reshape(-1, 2)])
                           for s, c in jobs]) if jobs else np.zeros((0, 3), np.int64)
    ends = np.cumsum(sizes)
    maps = np.zeros((len(refs), m, m), dtype=np.float16)
    max_prob = np.zeros(len(refs), dtype=np.float32)
    job, done = 0, 0
    bar = tqdm(total=len(refs), desc=desc, unit="patch", disable=not progress)

    def finished() -> Iterator[tuple[int, PatchMaps]]:
        nonlocal job
        while job < len(jobs) and ends[job] <= done:
            a = ends[job] - sizes[job]
            yield jobs[job][0], PatchMaps(maps[a:ends[job]].copy(), max_prob[a:ends[job]].copy())
            job += 1

    yield from finished()  # slides without patches
    if len(refs):
        loader = make_loader(PatchReader(sources, refs, patch_size, mpp), batch_size,
                             num_workers, device)
        pending: _HostCopy | None = None
        with torch.inference_mode():
            for batch in loader:
                x = to_input(batch, device, channels_last)
                with autocast(device, amp):
                    logits = model(x)
                prob = torch.sigmoid(logits.float())
                if prob.ndim == 2:  # a patch classifier: one probability per patch
                    prob = prob[:, :1, None, None]
                small = F.adaptive_avg_pool2d(prob, m) if m != prob.shape[-1] else prob
                staged = _HostCopy(prob.amax(dim=(1, 2, 3)), small[:, 0].half())
                # The previous batch's results are collected only now, so the device has the
                # next batch queued while the host waits for the copy.
                if pending is not None:
                    done = pending.into(max_prob, maps, done)
                    bar.update(pending.n)
                    yield from finished()
                pending = staged
            if pending is not None:
                done = pending.into(max_prob, maps, done)
                bar.update(pending.n)
                yield from finished()
    bar.close()


class _HostCopy:
    """Device-to-host copy of one batch's results, started without blocking the host."""

    def __init__(self, max_prob: torch.Tensor, maps: torch.Tensor) -> None:
        self.n = int(max_prob.shape[0])
        cuda = max_prob.device.type == "cuda"
        self.max_prob = max_prob.to("cpu", non_blocking=cuda)
        self.maps = maps.to("cpu", non_blocking=cuda)
        self.event = None
        if cuda:
            self.event = torch.cuda.Event()
            self.event.record()

    def into(self, max_prob: np.ndarray, maps: np.ndarray, offset: int) -> int:
        if self.event is not None:
            self.event.synchronize()
        max_prob[offset:offset + self.n] = self.max_prob.numpy()
        maps[offset:offset + self.n] = self.maps.numpy()
        return offset + self.n


def infer_patches(model: torch.nn.Module, source: SlideSource, coords: np.ndarray,
                  patch_size: int, mpp: float, map_downsample: int, device: torch.device,
                  **kwargs) -> PatchMaps:
    """Maps of one slide's patches."""
    out = list(infer_slides_iter(model, [source], [(0, coords)], patch_size, mpp,
                                 map_downsample, device, **kwargs))
    return out[0][1]
