"""Run a model over the patches of slides: the one inference path used by the E-step, the MIL
baseline, prediction and the heatmaps. Segmenters give a probability map per patch; patch
classifiers give one probability (a 1x1 map)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from mixsup.inference.cpu_backend import inference_model
from mixsup.inference.settings import InferSettings
from mixsup.runtime.device import autocast, loader_workers, to_input
from mixsup.runtime.progress import progress_bar
from mixsup.slides.patches import PatchReader, SlideSource


@dataclass
class PatchMaps:
    """Per-patch reduced-resolution probability maps and each patch's max probability."""

    maps: np.ndarray  # (N, m, m) float16
    max_prob: np.ndarray  # (N,) float32


def make_loader(dataset: Dataset, batches: Iterable[Sequence[int]], num_workers: int,
                device: torch.device) -> DataLoader:
    """``batches``: lists of dataset indices (a batch sampler, or ranges in a fixed order)."""
    num_workers = loader_workers(num_workers)
    return DataLoader(dataset, batch_sampler=cast(Sampler, batches), num_workers=num_workers,
                      pin_memory=device.type == "cuda",
                      prefetch_factor=4 if num_workers > 0 else None,
                      persistent_workers=False)


class SlideSink(Protocol):
    """Receives one slide's results, each block at its row ``offset`` (a slide that two loader
    workers share arrives in two runs); ``finish`` returns what the iterator yields."""

    def write(self, *results_then_offset: Any) -> None: ...

    def finish(self) -> Any: ...

    def abort(self) -> None: ...


class _MemorySink:
    def __init__(self, n: int, m: int) -> None:
        self.maps = np.zeros((n, m, m), np.float16)
        self.max_prob = np.zeros(n, np.float32)

    def write(self, maps: np.ndarray, max_prob: np.ndarray, offset: int) -> None:
        self.maps[offset:offset + len(maps)] = maps
        self.max_prob[offset:offset + len(maps)] = max_prob

    def finish(self) -> PatchMaps:
        return PatchMaps(self.maps, self.max_prob)

    def abort(self) -> None:
        pass


# (slide index, number of patches, map side) -> the sink for that slide's results
SinkFactory = Callable[[int, int, int], SlideSink]


def memory_sink(slide: int, n: int, m: int) -> SlideSink:
    return _MemorySink(n, m)


class Router:
    """Hands each result to the sink of the slide it belongs to, at its row, and yields a
    slide's ``finish()`` once all its patches are in. Results come in stretches (one per loader
    worker, see ``worker_batches``), so a slide two stretches share arrives in two runs; the
    sink takes each where it belongs, and nothing waits here."""

    def __init__(self, jobs: list[tuple[int, np.ndarray]], m: int, open_sink: SinkFactory):
        self.jobs, self.m, self.open_sink = jobs, m, open_sink
        self.sizes = [len(c) for _, c in jobs]
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.filled = [0] * len(jobs)
        self.sinks: dict[int, SlideSink] = {}

    def empty(self) -> Iterator[tuple[int, Any]]:
        """The slides without patches."""
        for j, n in enumerate(self.sizes):
            if n == 0:
                yield self.jobs[j][0], self.open_sink(self.jobs[j][0], 0, self.m).finish()

    def feed(self, first: int, *results: np.ndarray) -> Iterator[tuple[int, Any]]:
        """Results (rows: the patches ``first``, ``first + 1``, ..., in the global order of
        the jobs): ``(maps, max_prob)`` for map sinks, ``(features,)`` for feature sinks."""
        pos, n = 0, len(results[0])
        while pos < n:
            g = first + pos
            j = int(np.searchsorted(self.starts, g, side="right")) - 1
            take = min(n - pos, int(self.starts[j + 1]) - g)
            sink = self.sinks.get(j)
            if sink is None:
                sink = self.sinks[j] = self.open_sink(self.jobs[j][0], self.sizes[j], self.m)
            sink.write(*(r[pos:pos + take] for r in results), g - int(self.starts[j]))
            self.filled[j] += take
            pos += take
            if self.filled[j] == self.sizes[j]:
                del self.sinks[j]
                yield self.jobs[j][0], sink.finish()

    def abort(self) -> None:
        """Drop the slides begun but not finished (inference stopped part-way)."""
        for sink in self.sinks.values():
            sink.abort()
        self.sinks.clear()


def worker_batches(sizes: list[int], batch_size: int, workers: int) -> list[range]:
    """Batches of consecutive patches, ordered so that the DataLoader's round-robin (batch i to
    worker i mod ``workers``) gives each worker one contiguous stretch of the patch order:
    neighbours share slide tiles, so each tile is decoded by one worker, from its own cache,
    instead of by every worker in turn. The stretches are equal (their batch counts differ
    by at most one); where one ends inside a slide, that slide arrives in two runs."""
    n = int(sum(sizes))
    if workers <= 1 or n == 0:
        return [range(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]
    cuts = [round(n * k / workers) for k in range(workers + 1)]
    streams = [[range(a, min(a + batch_size, hi)) for a in range(lo, hi, batch_size)]
               for lo, hi in itertools.pairwise(cuts)]
    # The stretches with one batch more go first, so that in the last round, which only they
    # fill, each still lands on its own worker.
    streams.sort(key=len, reverse=True)
    return [s[k] for k in range(len(streams[0])) for s in streams if k < len(s)]


def patch_batches(sources: list[SlideSource], jobs: list[tuple[int, np.ndarray]],
                  sizes: list[int], patch_size: int, mpp: float,
                  settings: InferSettings) -> tuple[list[range], DataLoader]:
    """The jobs' patches (slide index, level-0 coords) as the batches ``worker_batches`` orders
    and the one DataLoader that reads them: shared by every pass over patches."""
    refs = np.concatenate([np.column_stack([np.full(len(c), s, np.int64),
                                            np.asarray(c, np.int64).reshape(-1, 2)])
                           for s, c in jobs])
    batches = worker_batches(sizes, settings.batch_size, settings.num_workers)
    return batches, make_loader(PatchReader(sources, refs, patch_size, mpp), batches,
                                settings.num_workers, settings.device)


def map_slides(model: torch.nn.Module, sources: list[SlideSource],
               jobs: list[tuple[int, np.ndarray]], patch_size: int, mpp: float,
               settings: InferSettings, progress: bool = False, desc: str = "infer",
               open_sink: SinkFactory = memory_sink) -> Iterator[tuple[int, Any]]:
    """Yield (slide index, ``sink.finish()``) for each job (slide index, level-0 coords) as it
    completes; the default sink gives in-memory ``PatchMaps``.

    All jobs share one DataLoader, so worker processes start once, not once per slide.
    """
    model.eval()
    net = inference_model(model, settings, patch_size)
    device, m = settings.device, max(1, patch_size // settings.map_downsample)
    router = Router(jobs, m, open_sink)
    n = sum(router.sizes)
    bar = progress_bar(total=n, desc=desc, unit="patch", disable=not progress)
    yield from router.empty()
    if n:
        batches, loader = patch_batches(sources, jobs, router.sizes, patch_size, mpp, settings)
        pending: _HostCopy | None = None
        try:
            with torch.inference_mode():
                for rows, batch in zip(batches, loader, strict=True):
                    x = to_input(batch, device, settings.channels_last)
                    with autocast(device, settings.amp):
                        logits = net(x)
                    prob = torch.sigmoid(logits.float())
                    if prob.ndim == 2:  # a patch classifier: one probability per patch
                        prob = prob[:, :1, None, None]
                    small = F.adaptive_avg_pool2d(prob, m) if m != prob.shape[-1] else prob
                    staged = _HostCopy(rows.start, prob.amax(dim=(1, 2, 3)),
                                       small[:, 0].half())
                    # The previous batch's results are collected only now, so the device has
                    # the next batch queued while the host waits for the copy.
                    if pending is not None:
                        yield from router.feed(pending.first, *pending.collect())
                        bar.update(pending.n)
                    pending = staged
                if pending is not None:
                    yield from router.feed(pending.first, *pending.collect())
                    bar.update(pending.n)
        except BaseException:  # an error, or the caller stopped iterating
            router.abort()
            raise
    bar.close()


class _HostCopy:
    """Device-to-host copy of one batch's results, started without blocking the host."""

    def __init__(self, first: int, max_prob: torch.Tensor, maps: torch.Tensor) -> None:
        self.first = first  # the batch's first patch in the global order
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


def map_slide(model: torch.nn.Module, source: SlideSource, coords: np.ndarray,
              patch_size: int, mpp: float, settings: InferSettings,
              open_sink: SinkFactory = memory_sink) -> Any:
    """Maps of one slide's patches (``PatchMaps``, or what ``open_sink``'s sink returns)."""
    out = list(map_slides(model, [source], [(0, coords)], patch_size, mpp, settings,
                          open_sink=open_sink))
    return out[0][1]
