"""θ2 warm-started from θ1's encoder (stage2.init_from_theta1)."""

import pytest
import torch

from mixsup.config import load_config
from mixsup.errors import ConfigError, MixsupError
from mixsup.models.factory import build_classifier, build_segmenter, init_from_segmenter


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
    with pytest.raises(ConfigError, match="init_from_theta1"):
        load_config("tiny", overrides=["stage2.init_from_theta1=true",
                                       "stage2.encoder=resnet18"])
    cfg = load_config("tiny", overrides=["stage2.init_from_theta1=true"])
    assert cfg.stage2.init_from_theta1
