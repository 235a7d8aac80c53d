from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mixsup.config import ModelConfig
from mixsup.errors import MixsupError
from mixsup.models.encoders import (
    HALF,
    IMAGENET_MEAN,
    input_norm,
    map_by_position,
    packaged_file,
    packaged_state_dict,
)
from mixsup.models.factory import build_classifier, build_segmenter


def test_map_by_position_renames_and_refuses_mismatches(tmp_path: Path):
    src = {"_conv_stem.weight": torch.ones(4, 3, 3, 3), "_bn0.weight": torch.zeros(4)}
    out = map_by_position(src, ["conv_stem.weight", "bn1.weight"], [(4, 3, 3, 3), (4,)],
                          tmp_path / "w.pth")
    assert list(out) == ["conv_stem.weight", "bn1.weight"]
    assert out["conv_stem.weight"] is src["_conv_stem.weight"]
    with pytest.raises(MixsupError, match=r"tensor 1 \(_bn0.weight\) has shape \(4,\)"):
        map_by_position(src, ["a", "b"], [(4, 3, 3, 3), (5,)], tmp_path / "w.pth")
    with pytest.raises(MixsupError, match="has 2 tensors, the encoder 3"):
        map_by_position(src, ["a", "b", "c"], [(1,), (1,), (1,)], tmp_path / "w.pth")


def test_packaged_efficientnet_lite0_loads_every_tensor():
    state = packaged_state_dict("efficientnet_lite0")
    raw = torch.load(packaged_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert len(state) == len(raw) == 296
    assert torch.equal(state["conv_stem.weight"], raw["_conv_stem.weight"])
    assert torch.equal(state["classifier.bias"], raw["_fc.bias"])
    seg = build_segmenter(ModelConfig(encoder="efficientnet_lite0", pretrained=True,
                                      head_channels=8))
    assert torch.equal(seg.encoder.state_dict()["blocks.6.0.conv_pwl.weight"],
                       state["blocks.6.0.conv_pwl.weight"])
    cls = build_classifier("efficientnet_lite0", pretrained=True)
    assert torch.equal(cls.state_dict()["bn2.running_var"], state["bn2.running_var"])
    assert cls.state_dict()["classifier.weight"].shape == (1, 1280)  # fresh one-logit head


def test_packaged_weights_classify_an_imagenet_picture():
    """The loaded weights are ImageNet's: scikit-image's cat photo comes out as a cat
    (ImageNet classes 281-285), under the (x - 0.5) / 0.5 input they were measured to expect."""
    import cv2
    import skimage.data
    import timm

    from mixsup.models.encoders import load_packaged

    img = skimage.data.chelsea()[:, 75:375]
    x = torch.from_numpy(cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA))
    x = (x.permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    model = timm.create_model("efficientnet_lite0")
    load_packaged(model, "efficientnet_lite0")
    with torch.inference_mode():
        probs = model.eval()(x).softmax(1)[0]
    assert int(probs.argmax()) in range(281, 286)
    assert float(probs[281:286].sum()) > 0.8


def test_normalisation_lives_in_the_model_and_survives_checkpoints():
    cfg = ModelConfig(encoder="efficientnet_lite0", pretrained=True, head_channels=8)
    assert input_norm("efficientnet_lite0", True) == (HALF, HALF)
    assert input_norm("efficientnet_lite0", False)[0] == IMAGENET_MEAN
    seg = build_segmenter(cfg).eval()
    assert not any("input_norm" in k for k in seg.state_dict())
    again = build_segmenter(cfg, load_weights=False).eval()
    again.load_state_dict(seg.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(seg(x), again(x))
    cls = build_classifier("efficientnet_lite0", True).eval()
    with torch.inference_mode():
        manual = cls.forward_head(cls.forward_features((x - 0.5) / 0.5))
        hooked = cls(x)
    np.testing.assert_allclose(hooked.numpy(), manual.numpy(), rtol=1e-5, atol=1e-6)
