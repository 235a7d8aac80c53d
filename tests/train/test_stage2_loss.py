"""Stage 2's training loss: padded top-K slots stay out of BatchNorm in training and in the BN
recalibration."""

from __future__ import annotations

import copy

import torch

from mixsup.config import RuntimeConfig
from mixsup.runtime.device import to_input
from mixsup.train.fit import recalibrate_bn
from mixsup.train.stage2 import stage2_loss
from tests.helpers import padded_batch, spy_model

CPU = torch.device("cpu")
RT = RuntimeConfig(device="cpu", num_workers=0)


def test_padding_is_out_of_batchnorm_in_training_and_recalibration():
    patches, valid, label = padded_batch()
    model = spy_model()
    reference = copy.deepcopy(model).train()
    reference.bn.momentum = None
    reference(to_input(patches[valid], CPU, False))  # the statistics of the real patches
    model.train()
    stage2_loss(model, (patches, valid, label), CPU, RT).backward()
    assert len(model.seen[-1]) == 4 and model.conv.weight.grad is not None
    recalibrate_bn(model, [(patches, valid, label)], stage2_loss, CPU, RT, max_batches=1)
    torch.testing.assert_close(model.bn.running_mean, reference.bn.running_mean)
    torch.testing.assert_close(model.bn.running_var, reference.bn.running_var)
