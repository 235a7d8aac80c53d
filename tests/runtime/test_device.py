"""The input every model sees: [0, 1] from to_input, then the encoder's mean/std in the model."""

from __future__ import annotations

import torch

from mixsup.config import RuntimeConfig
from mixsup.models.encoders import IMAGENET_MEAN, IMAGENET_STD, InputNorm
from mixsup.runtime.device import to_input, use_channels_last

CPU = torch.device("cpu")


def test_to_input_scales_to_unit_range_channel_first():
    px = torch.tensor([[[[255, 0, 51]]]], dtype=torch.uint8)  # one NHWC pixel: R, G, B
    x = to_input(px, CPU, channels_last=False)
    assert x.shape == (1, 3, 1, 1) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.tensor([1.0, 0.0, 0.2]).view(1, 3, 1, 1))
    nchw = to_input(px.permute(0, 3, 1, 2), CPU, channels_last=False)
    torch.testing.assert_close(nchw, x)  # channel-first input is not permuted again
    # (1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225
    normalised = InputNorm(IMAGENET_MEAN, IMAGENET_STD)(x)
    torch.testing.assert_close(normalised,
                               torch.tensor([2.2489083, -2.0357143, -0.9155556]).view(1, 3, 1, 1))


def test_to_input_gives_the_layout_asked_for():
    img = torch.arange(2 * 4 * 5 * 3, dtype=torch.int64).remainder(256).to(torch.uint8)
    img = img.view(2, 4, 5, 3)
    x = to_input(img, CPU, channels_last=True)
    assert x.shape == (2, 3, 4, 5) and x.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x[1, 2, 3, 4], img[1, 3, 4, 2].float() / 255)
    # The permuted NHWC batch is channels_last in memory: NCHW must be asked for and made.
    plain = to_input(img, CPU, channels_last=False)
    assert plain.is_contiguous() and not plain.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(plain, x)


def test_layout_auto_is_channels_last_except_gpu_inference():
    cuda = torch.device("cuda")
    # channels_last=false is what every run before 0.2 stored: it must still mean auto
    for auto in (RuntimeConfig(), RuntimeConfig(channels_last=False)):
        assert use_channels_last(auto, CPU, training=True)
        assert use_channels_last(auto, CPU, training=False)
        assert use_channels_last(auto, cuda, training=True)
        assert not use_channels_last(auto, cuda, training=False)
    for cfg, forced in ((RuntimeConfig(layout="channels_last"), True),
                        (RuntimeConfig(channels_last=True), True),
                        (RuntimeConfig(layout="nchw"), False),
                        (RuntimeConfig(layout="nchw", channels_last=True), False)):
        assert {use_channels_last(cfg, d, t) for d in (CPU, cuda) for t in (True, False)} == {
            forced}


def test_too_many_loader_workers_are_clamped_with_one_warning(monkeypatch, caplog):
    import logging

    from mixsup.runtime import device

    monkeypatch.setattr(device, "usable_cpus", lambda: 3)
    monkeypatch.setattr(device, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger=device.log.name):
        got = [device.loader_workers(10_000) for _ in range(5)]  # five epochs' loaders
    assert got == [device.WORKERS_PER_CPU * 3] * 5
    assert sum("num_workers" in r.getMessage() for r in caplog.records) == 1
    assert device.loader_workers(1) == 1
