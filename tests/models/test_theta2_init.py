"""θ2's starting points (stage2.init): its own encoder, θ1's encoder, or θ1 with a max head."""

import pytest
import torch

from mixsup.config import load_config
from mixsup.errors import ConfigError, MixsupError
from mixsup.models.factory import (
    build_classifier,
    build_segmenter,
    build_theta2,
    init_from_segmenter,
)
from mixsup.models.max_logit import MaxLogitClassifier
from mixsup.train.fit import recalibrate_bn


def test_encoder_tensors_are_copied_and_the_head_is_left_alone():
    seg = build_segmenter(load_config("tiny").model)
    clf = build_classifier("mobilenetv3_small_100")
    head_before = clf.classifier.weight.detach().clone()
    left = init_from_segmenter(clf, seg.state_dict())
    assert left == ["classifier.bias", "classifier.weight", "conv_head.bias", "conv_head.weight"]
    own = clf.state_dict()
    enc = {k[len("encoder."):]: v for k, v in seg.state_dict().items()
           if k.startswith("encoder.")}
    assert enc and all(torch.equal(own[k], v) for k, v in enc.items())
    assert torch.equal(clf.classifier.weight, head_before)


def test_a_different_encoder_is_refused():
    seg = build_segmenter(load_config("tiny").model)
    clf = build_classifier("resnet18")
    with pytest.raises(MixsupError, match="does not fit"):
        init_from_segmenter(clf, seg.state_dict())
    with pytest.raises(MixsupError, match="no encoder tensors"):
        init_from_segmenter(clf, {"head.weight": torch.zeros(1)})


def test_config_refuses_mismatched_encoders():
    with pytest.raises(ConfigError, match="theta1_encoder"):
        load_config("tiny", overrides=["stage2.init=theta1_encoder", "stage2.encoder=resnet18"])
    with pytest.raises(ConfigError, match="stage2.init"):
        load_config("tiny", overrides=["stage2.init=imagenet"])
    with pytest.raises(ConfigError, match="stage2.weights is unused"):
        load_config("tiny", overrides=["stage2.init=theta1", "stage2.weights=w.pth"])
    # θ1 with a max head does not use stage2.encoder at all
    assert load_config("tiny", overrides=["stage2.init=theta1",
                                          "stage2.encoder=resnet18"]).stage2.init == "theta1"


def _trained_looking_segmenter():
    torch.manual_seed(0)
    seg = build_segmenter(load_config("tiny").model)
    seg.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial BatchNorm statistics
            seg(torch.rand(4, 3, 64, 64))
    return seg.eval()


def test_theta1_start_scores_patches_by_theta1_max_probability():
    seg = _trained_looking_segmenter()
    cfg = load_config("tiny", overrides=["stage2.init=theta1"])
    theta2 = build_theta2(cfg.model, cfg.stage2, seg.state_dict()).eval()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expect = torch.sigmoid(seg(x)).amax(dim=(-2, -1)).reshape(-1)
        got = torch.sigmoid(theta2(x)).reshape(-1)
    torch.testing.assert_close(got, expect)
    # a bundle rebuilds the same network for the saved weights
    again = build_theta2(cfg.model, cfg.stage2, load_weights=False)
    again.load_state_dict(theta2.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(again.eval()(x)).reshape(-1), expect)


def test_theta1_start_keeps_batchnorm_statistics_in_training():
    net = MaxLogitClassifier(_trained_looking_segmenter())
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    net.train()
    assert net.training and not bn.training
    net(torch.rand(4, 3, 64, 64)).sum().backward()
    recalibrate_bn(net, [(torch.rand(4, 3, 64, 64),)], lambda *a: None, torch.device("cpu"),
                   load_config("tiny").runtime, 4)
    assert torch.equal(bn.running_mean, before)


def test_other_starts_build_the_configured_classifier():
    seg = build_segmenter(load_config("tiny").model)
    cfg = load_config("tiny", overrides=["stage2.init=theta1_encoder"])
    net = build_theta2(cfg.model, cfg.stage2, seg.state_dict())
    assert not isinstance(net, MaxLogitClassifier)
    w = seg.state_dict()["encoder.conv_stem.weight"]
    assert torch.equal(net.state_dict()["conv_stem.weight"], w)
    plain = build_theta2(cfg.model, load_config("tiny", overrides=["stage2.init=encoder"]).stage2,
                         seg.state_dict())
    assert not torch.equal(plain.state_dict()["conv_stem.weight"], w)
