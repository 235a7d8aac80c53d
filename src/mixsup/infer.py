"""Run a model over the patches of slides: the one inference path used by the E-step, the MIL
baseline, prediction and the heatmaps. Segmenters give a probability map per patch; patch
classifiers give one probability (a 1x1 map)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

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


class SlideSink(Protocol):
    """Receives one slide's results in patch order; ``finish`` returns what the iterator yields."""

    def write(self, maps: np.ndarray, max_prob: np.ndarray) -> None: ...

    def finish(self) -> Any: ...


class _MemorySink:
    def __init__(self, n: int, m: int) -> None:
        self.maps = np.zeros((n, m, m), np.float16)
        self.max_prob = np.zeros(n, np.float32)
        self.filled = 0

    def write(self, maps: np.ndarray, max_prob: np.ndarray) -> None:
        k = len(maps)
        self.maps[self.filled:self.filled + k] = maps
        self.max_prob[self.filled:self.filled + k] = max_prob
        self.filled += k

    def finish(self) -> PatchMaps:
        return PatchMaps(self.maps, self.max_prob)


# (slide index, number of patches, map side) -> the sink for that slide's results
SinkFactory = Callable[[int, int, int], SlideSink]


def memory_sink(slide: int, n: int, m: int) -> SlideSink:
    return _MemorySink(n, m)


class _Router:
    """Hands consecutive results to the sink of the slide they belong to, one slide open at a
    time, so memory follows the sink (a slide's maps in RAM, or one chunk for a store)."""

    def __init__(self, jobs: list[tuple[int, np.ndarray]], m: int, open_sink: SinkFactory):
        self.jobs, self.m, self.open_sink = jobs, m, open_sink
        self.job, self.pos = 0, 0
        self.sink: SlideSink | None = None

    def _size(self) -> int:
        return len(self.jobs[self.job][1])

    def feed(self, maps: np.ndarray, max_prob: np.ndarray) -> Iterator[tuple[int, Any]]:
        i = 0
        while True:
            while self.job < len(self.jobs) and self.pos == self._size():
                sink = self.sink or self.open_sink(self.jobs[self.job][0], 0, self.m)
                yield self.jobs[self.job][0], sink.finish()
                self.job, self.pos, self.sink = self.job + 1, 0, None
            if i >= len(maps):
                return
            if self.sink is None:
                self.sink = self.open_sink(self.jobs[self.job][0], self._size(), self.m)
            take = min(len(maps) - i, self._size() - self.pos)
            self.sink.write(maps[i:i + take], max_prob[i:i + take])
            self.pos += take
            i += take


def infer_slides_iter(model: torch.nn.Module, sources: list[SlideSource],
                      jobs: list[tuple[int, np.ndarray]], patch_size: int, mpp: float,
                      map_downsample: int, device: torch.device, batch_size: int = 64,
                      num_workers: int = 0, amp: bool = True, channels_last: bool = True,
                      progress: bool = False, desc: str = "infer",
                      open_sink: SinkFactory = memory_sink) -> Iterator[tuple[int, Any]]:
    """Yield (slide index, ``sink.finish()``) for each job (slide index, level-0 coords) as it
    completes; the default sink gives in-memory ``PatchMaps``.

    All jobs share one DataLoader, so worker processes start once, not once per slide.
    """
    model.eval()
    m = max(1, patch_size // map_downsample)
    refs = np.concatenate([np.column_stack([np.full(len(c), s, np.int64),
                                            np.asarray(c, np.int64).reshape(-1, 2)])
                           for s, c in jobs]) if jobs else np.zeros((0, 3), np.int64)
    router = _Router(jobs, m, open_sink)
    bar = tqdm(total=len(refs), desc=desc, unit="patch", disable=not progress)
    no_results = (np.zeros((0, m, m), np.float16), np.zeros(0, np.float32))
    yield from router.feed(*no_results)  # slides without patches
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
                    yield from router.feed(*pending.collect())
                    bar.update(pending.n)
                pending = staged
            if pending is not None:
                yield from router.feed(*pending.collect())
                bar.update(pending.n)
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

    def collect(self) -> tuple[np.ndarray, np.ndarray]:
        """(maps, max_prob) on the host, once the copy has landed."""
        if self.event is not None:
            self.event.synchronize()
        return self.maps.numpy(), self.max_prob.numpy()


def infer_patches(model: torch.nn.Module, source: SlideSource, coords: np.ndarray,
                  patch_size: int, mpp: float, map_downsample: int, device: torch.device,
                  **kwargs) -> Any:
    """Maps of one slide's patches (``PatchMaps``, or what ``open_sink``'s sink returns)."""
    out = list(infer_slides_iter(model, [source], [(0, coords)], patch_size, mpp,
                                 map_downsample, device, **kwargs))
    return out[0][1]
