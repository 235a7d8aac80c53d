"""θ1: a timm encoder (DLA34 in the paper) with the DLAUp/IDAUp decoder of Yu et al. (2018).

The decoder follows the CenterNet/DLA-seg design: each IDAUp block projects a deeper feature
map with a 1x1 convolution, upsamples it with a depthwise transposed convolution initialised
to bilinear interpolation, and fuses it with the shallower map through a 3x3 node. The head
predicts one logit channel at stride 2, which is upsampled to the input size.
"""

from __future__ import annotations

import math
from typing import cast

import timm
import torch
import torch.nn.functional as F
from timm.models import FeatureInfo
from torch import nn

from mixsup.errors import MixsupError
from mixsup.models.encoders import IMAGENET_MEAN, IMAGENET_STD, InputNorm


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def bilinear_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Depthwise transposed convolution that starts as exact bilinear upsampling."""
    up = nn.ConvTranspose2d(channels, channels, factor * 2, stride=factor, padding=factor // 2,
                            groups=channels, bias=False)
    k = up.weight.shape[-1]
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    coords = torch.arange(k, dtype=torch.float32)
    w1d = 1 - torch.abs(coords / f - c)
    with torch.no_grad():
        up.weight.copy_((w1d[:, None] * w1d[None, :]).expand_as(up.weight))
    return up


class IDAUp(nn.Module):
    """Iterative deep aggregation: fold maps ``startp+1 .. endp-1`` into the one before each."""

    def __init__(self, out_ch: int, in_channels: list[int], up_factors: list[int]) -> None:
        super().__init__()
        self.proj = nn.ModuleList()
        self.up = nn.ModuleList()
        self.node = nn.ModuleList()
        for cin, f in zip(in_channels[1:], up_factors[1:], strict=True):
            self.proj.append(_conv_bn_relu(cin, out_ch, 1))
            self.up.append(bilinear_upsampler(out_ch, int(f)))
            self.node.append(_conv_bn_relu(out_ch, out_ch, 3))

    def forward(self, layers: list[torch.Tensor], startp: int, endp: int) -> None:
        for i in range(startp + 1, endp):
            j = i - startp - 1
            layers[i] = self.up[j](self.proj[j](layers[i]))
            layers[i] = self.node[j](layers[i] + layers[i - 1])


class DLAUp(nn.Module):
    """Aggregates the pyramid from deep to shallow; returns maps from shallowest to deepest."""

    def __init__(self, channels: list[int], scales: list[int]) -> None:
        super().__init__()
        channels, scales, in_channels = list(channels), list(scales), list(channels)
        self.idas = nn.ModuleList()
        for i in range(len(channels) - 1):
            j = -i - 2
            self.idas.append(IDAUp(channels[j], in_channels[j:],
                                   [s // scales[j] for s in scales[j:]]))
            scales[j + 1:] = [scales[j]] * len(scales[j + 1:])
            in_channels[j + 1:] = [channels[j]] * len(in_channels[j + 1:])

    def forward(self, layers: list[torch.Tensor]) -> list[torch.Tensor]:
        layers = list(layers)
        out = [layers[-1]]
        for i, ida in enumerate(self.idas):
            ida(layers, len(layers) - i - 2, len(layers))
            out.insert(0, layers[-1])
        return out


def _feature_info(trunk: nn.Module, encoder: str) -> FeatureInfo:
    """The stride and channels of each map of a timm ``features_only`` trunk."""
    info = getattr(trunk, "feature_info", None)
    if not isinstance(info, FeatureInfo):
        raise MixsupError(f"timm encoder {encoder!r} gives no feature pyramid",
                          "choose an encoder that timm can build with features_only=True")
    return info


class DLAUpSegmenter(nn.Module):
    """Encoder features at strides 2..32 -> DLAUp -> IDAUp -> 1 logit at stride 2 -> input size."""

    def __init__(self, encoder: str = "dla34", pretrained: bool = False,
                 head_channels: int = 64, mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        self.input_norm = InputNorm(mean, std)
        self.encoder = timm.create_model(encoder, pretrained=pretrained, features_only=True)
        info = _feature_info(self.encoder, encoder)
        reductions = info.reduction()
        if reductions[0] != 2:
            # Encoders whose first map is at stride 1 (e.g. some DLA variants) start one later.
            keep = [i for i, r in enumerate(reductions) if r >= 2]
            self.encoder = timm.create_model(encoder, pretrained=pretrained, features_only=True,
                                             out_indices=[info.out_indices[i] for i in keep])
            info = _feature_info(self.encoder, encoder)
            reductions = info.reduction()
        channels = list(info.channels())
        self.stride = int(reductions[-1])
        scales = [r // reductions[0] for r in reductions]
        self.dla_up = DLAUp(channels, scales)
        self.ida_up = IDAUp(channels[0], channels[:-1], [2**i for i in range(len(channels) - 1)])
        self.head = nn.Sequential(
            nn.Conv2d(channels[0], head_channels, 3, padding=1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(head_channels, 1, 1, bias=True),
        )
        # start near p = 0.1: most pixels are benign
        nn.init.constant_(cast(torch.Tensor, self.head[-1].bias), -2.19)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(x)
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "constant")
        feats = self.encoder(x)
        up = self.dla_up(feats)
        y = [t for t in up[:-1]]
        self.ida_up(y, 0, len(y))
        logits = self.head(y[-1])  # stride 2
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]
