"""Stage 2's top-K items: padding, the mean over valid patches, and padding kept off θ2."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from mixsup.config import RuntimeConfig
from mixsup.runtime import to_input
from mixsup.train.fit import recalibrate_bn
from mixsup.train.stage2 import TopKPatches, mean_of_valid, patch_probs, slide_probs, stage2_loss

CPU = torch.device("cpu")
RT = RuntimeConfig(device="cpu", num_workers=0)


class _Slides:
    """Stands in for the SlidePool: a patch's grey level is its x coordinate."""

    def read(self, idx: int, x: int, y: int, size: int, mpp: float) -> np.ndarray:
        return np.full((size, size, 3), x, np.uint8)


def _topk(coords: list[list[tuple[int, int]]], k: int) -> TopKPatches:
    ds = TopKPatches([], [np.array(c) for c in coords], [1, 0][: len(coords)], k, 4, 1.0)
    ds.slides = _Slides()
    return ds


class _Spy(nn.Module):
    """conv -> BatchNorm -> mean: one logit per patch; remembers what it was given."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 1)
        self.bn = nn.BatchNorm2d(2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.bn(self.conv(x)).mean(dim=(2, 3)).sum(1, keepdim=True)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ds = _topk([[(10, 0), (20, 0), (30, 0)], [(40, 0)]], k=3)
    items = [ds[0], ds[1]]
    return tuple(torch.stack(t) for t in zip(*items, strict=True))


def test_topk_items_are_padded_white_and_marked_invalid():
    ds = _topk([[(10, 0), (20, 0), (30, 0), (50, 0)], [(40, 0)]], k=3)
    patches, valid, label = ds[0]
    assert patches.shape == (3, 4, 4, 3) and valid.tolist() == [True] * 3
    assert [int(p[0, 0, 0]) for p in patches] == [10, 20, 30]  # the 4th is cut at K
    patches, valid, label = ds[1]
    assert valid.tolist() == [True, False, False] and float(label) == 0.0
    assert int(patches[0].max()) == 40 and bool((patches[1:] == 255).all())


def test_mean_of_valid_ignores_padded_slots():
    probs = torch.tensor([[0.2, 0.4, 0.9], [0.6, 0.99, 0.99], [0.3, 0.3, 0.3]])
    valid = torch.tensor([[True, True, True], [True, False, False], [False, False, False]])
    torch.testing.assert_close(mean_of_valid(probs, valid), torch.tensor([0.5, 0.6, 0.0]))


def test_padded_slots_never_reach_the_model():
    patches, valid, _ = _batch()
    model = _Spy().eval()
    probs = patch_probs(model, patches, valid, CPU, RT)
    (seen,) = model.seen
    torch.testing.assert_close(seen, to_input(patches[valid], CPU, False))  # 4 of 6 patches
    alone = torch.sigmoid(_Spy().eval()(to_input(patches[valid], CPU, False))[:, 0])
    torch.testing.assert_close(probs[valid], alone)
    assert probs[~valid].tolist() == [0.0, 0.0]
    torch.testing.assert_close(slide_probs(model, patches, valid, CPU, RT),
                               torch.stack([alone[:3].mean(), alone[3]]))


def test_padding_is_out_of_batchnorm_in_training_and_recalibration():
    patches, valid, label = _batch()
    model = _Spy()
    reference = copy.deepcopy(model).train()
    reference.bn.momentum = None
    reference(to_input(patches[valid], CPU, False))  # the statistics of the real patches
    model.train()
    stage2_loss(model, (patches, valid, label), CPU, RT).backward()
    assert len(model.seen[-1]) == 4 and model.conv.weight.grad is not None
    recalibrate_bn(model, [(patches, valid, label)], stage2_loss, CPU, RT, max_batches=1)
    torch.testing.assert_close(model.bn.running_mean, reference.bn.running_mean)
    torch.testing.assert_close(model.bn.running_var, reference.bn.running_var)
