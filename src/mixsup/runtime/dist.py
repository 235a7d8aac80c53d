"""PyTorch distributed (torchrun) in one small object, passed explicitly; no module state.

Under ``torchrun`` the environment names the rank and world size; without it everything runs
as a single process (rank 0 of 1) and no process group is created. torch is imported only where
a process group is in use: tiling passes the single-process ``Dist`` without needing torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mixsup.errors import MixsupError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as tdist

            tdist.barrier()

    def shard(self, items: list[T]) -> list[T]:
        """This rank's items: every world-th one, so the shards are disjoint and complete."""
        return items[self.rank::self.world]

    def all_gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        import torch.distributed as tdist

        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Make every rank's buffers (e.g. BatchNorm statistics) equal to rank 0's."""
        if self.active:
            import torch.distributed as tdist

            for buf in module.buffers():
                tdist.broadcast(buf, src=0)

    def mean(self, value: float) -> float:
        if not self.active:
            return value
        import torch
        import torch.distributed as tdist

        t = torch.tensor([value], dtype=torch.float64)
        tdist.all_reduce(t)
        return float(t.item()) / self.world


SINGLE = Dist()


def init_dist(device: str = "auto") -> Dist:
    """Join the process group that torchrun describes (gloo on CPU, nccl on GPU)."""
    world = env_int("WORLD_SIZE", "1", 1)
    if world == 1:
        return SINGLE
    import torch
    import torch.distributed as tdist

    rank, local = env_int("RANK", None, 0, world - 1), env_int("LOCAL_RANK", "0", 0, world - 1)
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
    return Dist(rank, world, local)


TORCHRUN_FIX = ("start the command with torchrun, which sets WORLD_SIZE, RANK and "
                "LOCAL_RANK, or unset WORLD_SIZE to run as one process")


def env_int(name: str, default: str | None, low: int, high: int | None = None) -> int:
    """The integer in environment variable ``name`` (``default`` when unset; None: it must be
    set); one that is missing, malformed or outside [low, high] is an error naming it."""
    raw = os.environ.get(name, default)
    if raw is None:
        raise MixsupError(f"WORLD_SIZE is set but {name} is not", TORCHRUN_FIX)
    value = int(raw) if raw.strip().isascii() and raw.strip().isdigit() else None
    if value is None or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise MixsupError(f"the environment variable {name}={raw[:40]!r} is not an integer "
                          f"{bounds}", TORCHRUN_FIX)
    return value


def close_dist(d: Dist) -> None:
    if not d.active:
        return
    import torch.distributed as tdist

    if tdist.is_initialized():
        tdist.destroy_process_group()
