"""HED stain augmentation (Tellez et al. 2019), vectorised over a whole batch.

Each image is taken to optical density, unmixed into haematoxylin, eosin and DAB with the
Ruifrok-Johnston matrix (the one of ``skimage.color.rgb2hed``), each stain is scaled by
``1 + U(-sigma, sigma)`` and shifted by ``U(-bias, bias)``, and the result is mixed back.
"""

from __future__ import annotations

import torch

# Rows: the optical-density colour of haematoxylin, eosin and DAB (skimage's ``rgb_from_hed``).
RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29],
                             [0.07, 0.99, 0.11],
                             [0.27, 0.57, 0.78]], dtype=torch.float64)
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
_OD_MIN = 1.0 / 255.0  # keeps log() finite on black pixels


def hed_jitter(images: torch.Tensor, sigma: float, bias: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``images``: uint8 (..., H, W, 3). Returns the same shape and dtype, every image with its
    own stain factors. ``sigma = bias = 0`` returns the input unchanged."""
    if sigma == 0 and bias == 0:
        return images
    shape = images.shape
    flat = images.reshape(-1, shape[-3] * shape[-2], 3).float()
    n = flat.shape[0]
    od = -torch.log(((flat + 1.0) / 256.0).clamp(min=_OD_MIN))
    hed = od @ HED_FROM_RGB.to(od)
    alpha = 1 + (torch.rand(n, 1, 3, generator=generator) * 2 - 1) * sigma
    beta = (torch.rand(n, 1, 3, generator=generator) * 2 - 1) * bias
    od = (hed * alpha.to(od) + beta.to(od)) @ RGB_FROM_HED.to(od)
    rgb = torch.exp(-od) * 256.0 - 1.0
    return rgb.round_().clamp_(0, 255).to(torch.uint8).reshape(shape)
