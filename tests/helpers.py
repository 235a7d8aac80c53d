"""Helpers shared by test modules (fixtures live in ``conftest.py``, which no module imports)."""

from __future__ import annotations

# Small enough for 2 CPU cores: init + 2 rounds + stage 2 on the shapes fixture in about a minute.
FAST = ["stage1.rounds=2", "stage1.epochs_init=2", "stage1.epochs_per_round=2",
        "stage1.steps_per_epoch=3", "stage1.batch_size=10", "runtime.num_workers=0",
        "tiling.overlap=0", "stage2.epochs=1", "stage2.steps_per_epoch=2", "stage2.top_k=2",
        "stage2.slides_per_batch=2"]


def fast_config(rounds: int = 2):
    from mixsup.config import load_config

    return load_config("tiny", overrides=[*FAST, f"stage1.rounds={rounds}"])


# θ2 stand-ins, for the scoring tests (tests/inference/test_theta2.py) and the stage-2 loss tests
# (tests/train/test_stage2_loss.py).


class GreySlides:
    """Stands in for the SlidePool: a patch's grey level is its x coordinate."""

    def read(self, idx: int, x: int, y: int, size: int, mpp: float):
        import numpy as np

        return np.full((size, size, 3), x, np.uint8)


def grey_topk(coords: list[list[tuple[int, int]]], k: int):
    """``TopKPatches`` of slides labelled 1, 0 whose patches are grey (level = x)."""
    import numpy as np

    from mixsup.inference.theta2 import TopKPatches

    ds = TopKPatches([], [np.array(c) for c in coords], [1, 0][: len(coords)], k, 4, 1.0)
    ds.slides = GreySlides()
    return ds


def spy_model():
    """conv -> BatchNorm -> mean: one logit per patch; its ``seen`` remembers its inputs."""
    import torch
    from torch import nn

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 2, 1)
            self.bn = nn.BatchNorm2d(2)
            self.seen: list[torch.Tensor] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(x.detach().clone())
            return self.bn(self.conv(x)).mean(dim=(2, 3)).sum(1, keepdim=True)

    return Spy()


def padded_batch():
    """Two slides, K=3: the first with 3 patches, the second with 1 and two padded slots."""
    import torch

    ds = grey_topk([[(10, 0), (20, 0), (30, 0)], [(40, 0)]], k=3)
    items = [ds[0], ds[1]]
    return tuple(torch.stack(t) for t in zip(*items, strict=True))
