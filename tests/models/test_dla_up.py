from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixsup.models.dla_up import DLAUpSegmenter, bilinear_upsampler


@pytest.fixture(scope="module")
def small_model():
    return DLAUpSegmenter("mobilenetv3_small_100", head_channels=8).eval()


@pytest.mark.parametrize("size", [(64, 64), (128, 128), (96, 160), (100, 130), (33, 47)])
def test_output_is_one_logit_at_input_size(small_model, size):
    with torch.no_grad():
        out = small_model(torch.randn(2, 3, *size))
    assert out.shape == (2, 1, *size)


def test_dla34_decoder_strides_and_shape():
    model = DLAUpSegmenter("dla34").eval()
    assert model.encoder.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert model.encoder.feature_info.channels() == [32, 64, 128, 256, 512]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 96)).shape == (1, 1, 96, 96)
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        assert model(x).shape == (1, 1, 64, 64)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_transposed_conv_starts_as_bilinear(factor):
    up = bilinear_upsampler(3, factor)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        y = up(x)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert y.shape == ref.shape
    inner = slice(factor, -factor)  # borders differ: the conv pads with zeros
    torch.testing.assert_close(y[..., inner, inner], ref[..., inner, inner], atol=1e-5,
                               rtol=1e-5)


def test_compile_flag_wraps_forward_and_keeps_state_dict_names():
    from mixsup.runtime.device import compiled

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 1, 1)).eval()
    assert compiled(net, False) is net
    fast = compiled(net, True)
    assert fast is not net
    assert list(net.state_dict()) == [k.removeprefix("_orig_mod.") for k in fast.state_dict()]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), rtol=1e-4, atol=1e-4)
