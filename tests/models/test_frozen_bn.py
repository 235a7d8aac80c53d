"""``mil.batchnorm: frozen``: BatchNorm keeps its statistics while the MIL baseline trains."""

from __future__ import annotations

import torch
from torch import nn

from mixsup.config import RuntimeConfig
from mixsup.models.frozen_bn import freeze_batchnorm
from mixsup.train.fit import recalibrate_bn


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    bn = net[1]
    bn.running_mean.fill_(0.3)
    bn.running_var.fill_(2.0)
    return net


def test_frozen_batchnorm_trains_affine_weights_on_fixed_statistics():
    net = freeze_batchnorm(_net())
    x = torch.rand(8, 3, 16, 16) * 4  # far from the stored statistics
    net.eval()
    with torch.no_grad():
        expected = net(x)
    net.train()
    out = net(x)
    bn = net[1]
    assert torch.allclose(out, expected)  # train mode normalises as eval mode does
    assert torch.all(bn.running_mean == 0.3) and torch.all(bn.running_var == 2.0)
    out.sum().backward()
    assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0


def test_recalibration_leaves_frozen_statistics_alone():
    def loss_fn(model, batch, device, runtime):
        return model(batch).sum()

    batches = [torch.rand(8, 3, 16, 16) * 4 for _ in range(3)]
    plain, frozen = _net(), freeze_batchnorm(_net())
    for net in (plain, frozen):
        recalibrate_bn(net, batches, loss_fn, torch.device("cpu"), RuntimeConfig(), 3)
    assert not torch.allclose(plain[1].running_mean, torch.full((4,), 0.3))
    assert torch.all(frozen[1].running_mean == 0.3) and torch.all(frozen[1].running_var == 2.0)
