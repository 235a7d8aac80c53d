from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mixsup.config import TrainingConfig
from mixsup.train.fit import lr_at
from mixsup.train.stain import HED_FROM_RGB, RGB_FROM_HED, hed_jitter


def test_hed_matrices_are_inverse_and_match_skimage():
    from skimage.color import hed_from_rgb

    torch.testing.assert_close(HED_FROM_RGB @ RGB_FROM_HED, torch.eye(3, dtype=torch.float64))
    np.testing.assert_allclose(HED_FROM_RGB.numpy(), hed_from_rgb, atol=1e-6)


def test_hed_jitter_identity_and_per_image_factors():
    rng = np.random.default_rng(0)
    imgs = torch.from_numpy(rng.integers(0, 256, (4, 2, 16, 16, 3), dtype=np.uint8))
    assert hed_jitter(imgs, 0.0, 0.0) is imgs
    # a zero-width jitter still runs the OD round trip: exact up to rounding
    same = hed_jitter(imgs, 1e-12, 0.0, torch.Generator().manual_seed(0))
    assert (same.int() - imgs.int()).abs().max() <= 1
    out = hed_jitter(imgs, 0.2, 0.05, torch.Generator().manual_seed(1))
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    diffs = (out.float() - imgs.float()).reshape(8, -1).mean(1)
    assert len(set(np.round(diffs.numpy(), 3))) == 8  # every image its own factors
    again = hed_jitter(imgs, 0.2, 0.05, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_hed_jitter_scales_haematoxylin_only_when_asked():
    """Pure haematoxylin stays on the haematoxylin axis: jitter changes its depth, not hue."""
    od = RGB_FROM_HED[0] * 0.8
    px = (torch.exp(-od) * 256 - 1).round().clamp(0, 255).to(torch.uint8)
    img = px.view(1, 1, 1, 3).expand(1, 8, 8, 3).contiguous()
    out = hed_jitter(img, 0.3, 0.0, torch.Generator().manual_seed(3)).float()
    od_out = -torch.log((out[0, 0, 0] + 1) / 256).double()
    cos = float(od_out @ RGB_FROM_HED[0] / od_out.norm() / RGB_FROM_HED[0].norm())
    assert cos > 0.995  # uint8 rounding only
    assert abs(float(od_out.norm() / od.norm()) - 1) > 0.01  # the depth did change


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainingConfig(warmup_fraction=0.1, lr_schedule="cosine")
    lrs = [lr_at(s, 100, 1.0, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    flat = TrainingConfig(warmup_fraction=0.0, lr_schedule="constant")
    assert {lr_at(s, 10, 0.3, flat) for s in range(10)} == {0.3}
