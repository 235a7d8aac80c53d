"""model.freeze_stages: the encoder's early stages keep their weights and BatchNorm statistics
through training and BN recalibration, and no gradient reaches them."""

from __future__ import annotations

import pytest
import torch

from mixsup.config import ModelConfig, RuntimeConfig
from mixsup.errors import MixsupError
from mixsup.models.factory import build_segmenter
from mixsup.models.freeze import freeze_early_stages
from mixsup.train.fit import recalibrate_bn


def _train(model: torch.nn.Module, steps: int = 3) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        x = torch.rand(4, 3, 64, 64)
        loss = model(x).sigmoid().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_frozen_stages_keep_weights_and_statistics() -> None:
    torch.manual_seed(0)
    model = build_segmenter(ModelConfig(encoder="efficientnet_lite0", pretrained=True,
                                        head_channels=8, freeze_stages=2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model)
    loader = [(torch.rand(4, 3, 64, 64),) for _ in range(2)]
    recalibrate_bn(model, loader,  # type: ignore[arg-type]
                   lambda net, batch, device, runtime: net(batch[0]).mean(),
                   torch.device("cpu"), RuntimeConfig(), 2)
    after = model.state_dict()
    # EfficientNet-Lite0's first two maps: after blocks.0 and after blocks.1
    stem = [k for k in before if k.startswith(("encoder.conv_stem", "encoder.bn1",
                                                "encoder.blocks.0.", "encoder.blocks.1."))]
    later = [k for k in before if k.startswith("encoder.blocks.3.") and k.endswith("weight")]
    assert stem and later
    for k in stem:  # weights, running means and variances alike
        assert torch.equal(before[k], after[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in later)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    assert not any(grads[k] for k in stem if k in grads)
    assert all(g for n, g in grads.items() if n.startswith("encoder.blocks.2."))


def test_no_freezing_trains_the_stem() -> None:
    torch.manual_seed(0)
    model = build_segmenter(ModelConfig(encoder="mobilenetv3_small_100", head_channels=8))
    before = model.state_dict()["encoder.conv_stem.weight"].clone()
    _train(model)
    assert not torch.equal(before, model.state_dict()["encoder.conv_stem.weight"])


def test_more_stages_than_the_encoder_has_is_one_error() -> None:
    with pytest.raises(MixsupError, match="freeze_stages=7.*5 feature stages"):
        build_segmenter(ModelConfig(encoder="efficientnet_lite0", pretrained=True,
                                    freeze_stages=7))


@pytest.mark.parametrize(("encoder", "trainable"), [("resnet18", "encoder.layer2."),
                                                    ("convnext_atto", "encoder.stages_2.")])
def test_stages_are_the_encoders_outputs_whatever_timm_names_them(encoder, trainable) -> None:
    """resnet18's first map is a module without weights (act1); convnext's stages are named
    stages_0 in a features_only model but stages.0 in its feature_info."""
    model = build_segmenter(ModelConfig(encoder=encoder, weights=None, pretrained=False),
                            load_weights=False)
    freeze_early_stages(model.encoder, 2, encoder)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    first = next(n for n in grads if n.startswith(trainable))
    names = list(grads)
    assert not any(grads[n] for n in names[:names.index(first)] if n.startswith("encoder."))
    assert all(grads[n] for n in names[names.index(first):])


def test_freezing_needs_loaded_weights_and_stage2_from_theta1() -> None:
    from pydantic import ValidationError

    from mixsup.config import load_config

    with pytest.raises((ValidationError, MixsupError), match="none are loaded"):
        load_config("tiny", overrides=["model.freeze_stages=2"])
    with pytest.raises((ValidationError, MixsupError), match="stage2.init=theta1"):
        load_config("paper", overrides=["stage2.freeze_stages=2"])
