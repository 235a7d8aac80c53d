"""PyTorch distributed (torchrun) in one small object, passed explicitly; no module state.

Under ``torchrun`` the environment names the rank and world size; without it everything runs
as a single process (rank 0 of 1) and no process group is created. torch is imported only where
a process group is in use: tiling passes the single-process ``Dist`` without needing torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

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
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    import torch
    import torch.distributed as tdist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
    return Dist(rank, world, local)


def close_dist(d: Dist) -> None:
    if not d.active:
        return
    import torch.distributed as tdist

    if tdist.is_initialized():
        tdist.destroy_process_group()
