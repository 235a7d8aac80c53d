"""Batches that mix the three label pools at an exact ratio R = y_p : y_p+ : y_p-."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

log = logging.getLogger(__name__)


def batch_counts(batch_size: int, ratio: Sequence[float],
                 available: Sequence[int] | None = None) -> list[int]:
    """Per-pool counts summing to ``batch_size`` (largest remainder), the same for every batch.

    A pool marked unavailable (size 0) gives its share to the others, in proportion.
    """
    r = np.asarray(ratio, dtype=np.float64)
    if available is not None:
        r = np.where(np.asarray(available) > 0, r, 0.0)
    if r.sum() <= 0:
        raise ValueError("every pool with a non-zero share is empty")
    exact = r / r.sum() * batch_size
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    for i in order[: batch_size - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def split_first_pool(sizes: Sequence[int], ratio: Sequence[float], head: int,
                     share: float) -> tuple[list[int], list[float]]:
    """The first pool as two pools, its first ``head`` rows drawn at ``share`` of its ratio and
    the rest at ``1 - share``, the others as they were. Unsplit when either part is empty: an
    empty part would hand its share to every other pool."""
    sizes, ratio = [int(n) for n in sizes], [float(r) for r in ratio]
    if not 0 < head < sizes[0]:
        return sizes, ratio
    return ([head, sizes[0] - head, *sizes[1:]],
            [ratio[0] * share, ratio[0] * (1 - share), *ratio[1:]])


class MixedBatchSampler(Sampler[list[int]]):
    """Yields ``steps`` batches of indices into the concatenation of the pools.

    Each pool is drawn without replacement in a shuffled cycle, reshuffled when exhausted, so a
    pool smaller than its share is reused within an epoch (with a warning). With ``world_size``
    ranks, each rank draws its own stream, so every rank's batches keep the exact ratio.
    """

    def __init__(self, pool_sizes: Sequence[int], ratio: Sequence[float], batch_size: int,
                 steps: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.pool_sizes = [int(n) for n in pool_sizes]
        self.counts = batch_counts(batch_size, ratio, self.pool_sizes)
        self.offsets = np.concatenate([[0], np.cumsum(self.pool_sizes)[:-1]]).astype(int)
        self.steps = steps
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        for i, (n, c) in enumerate(zip(self.pool_sizes, self.counts, strict=True)):
            if 0 < n < c * steps:
                log.warning("pool %d holds %d patches but an epoch draws %d; sampling with "
                            "replacement", i, n, c * steps)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch, self.rank, self.world_size))
        streams = [shuffled_cycle(rng, n) for n in self.pool_sizes]
        for _ in range(self.steps):
            batch: list[int] = []
            for pool, count in enumerate(self.counts):
                batch.extend(int(self.offsets[pool] + next(streams[pool])) for _ in range(count))
            yield batch


def shuffled_cycle(rng: np.random.Generator, n: int) -> Iterator[int]:
    """0..n-1 in a new random order on every pass, forever (nothing for n = 0)."""
    while n > 0:
        yield from rng.permutation(n)


def default_steps(pool_sizes: Sequence[int], batch_size: int) -> int:
    return max(1, math.ceil(sum(pool_sizes) / batch_size))
