"""θ2's slide score: top-K selection, the padded top-K items, the mean over valid patches, and
padding kept off θ2."""

from __future__ import annotations

import numpy as np
import torch

from mixsup.inference.theta2 import mean_of_valid, patch_probs, slide_probs
from mixsup.inference.topk import top_k
from mixsup.runtime.device import to_input
from tests.helpers import grey_topk, padded_batch, spy_model

CPU = torch.device("cpu")


def test_top_k_orders_by_max_probability_stably():
    p = np.array([0.1, 0.9, 0.5, 0.9, 0.2])
    assert top_k(p, 3).tolist() == [1, 3, 2]
    assert top_k(p, 10).tolist() == [1, 3, 2, 4, 0]


def test_slide_probability_is_mean_of_k():
    class Logit(torch.nn.Module):  # each patch's logit is its first pixel's red value - 100
        def forward(self, x):  # x in [0, 1]
            return x[:, :1, 0, 0] * 255 - 100

    patches = torch.zeros(2, 2, 1, 1, 3, dtype=torch.uint8)
    patches[..., 0] = torch.tensor([[100, 100], [110, 90]]).view(2, 2, 1, 1)
    valid = torch.ones(2, 2, dtype=torch.bool)
    got = slide_probs(Logit(), patches, valid, CPU, amp=True, channels_last=False)
    torch.testing.assert_close(got, torch.tensor([0.5, 0.5]))  # sigmoid(0); (sigmoid(±10))/2


def test_topk_items_are_padded_white_and_marked_invalid():
    ds = grey_topk([[(10, 0), (20, 0), (30, 0), (50, 0)], [(40, 0)]], k=3)
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
    patches, valid, _ = padded_batch()
    model = spy_model().eval()
    probs = patch_probs(model, patches, valid, CPU, amp=True, channels_last=False)
    (seen,) = model.seen
    torch.testing.assert_close(seen, to_input(patches[valid], CPU, False))  # 4 of 6 patches
    alone = torch.sigmoid(spy_model().eval()(to_input(patches[valid], CPU, False))[:, 0])
    torch.testing.assert_close(probs[valid], alone)
    assert probs[~valid].tolist() == [0.0, 0.0]
    torch.testing.assert_close(slide_probs(model, patches, valid, CPU, True, False),
                               torch.stack([alone[:3].mean(), alone[3]]))
