"""Local weights files load strictly: every tensor of the file is used and every tensor of the
model filled, except the head the caller starts afresh; anything else is one error."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from mixsup.config import ModelConfig
from mixsup.errors import MixsupError
from mixsup.models.factory import build_classifier, build_segmenter
from mixsup.storage.artefacts import load_weights_into

ENCODER = "mobilenetv3_small_100"  # the tiny preset's


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def _timm_state(encoder: str = ENCODER, **kwargs) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return timm.create_model(encoder, pretrained=False, **kwargs).state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".bin", ".pth"])
def test_a_timm_file_fills_the_classifier_and_the_segmenter(tmp_path, suffix):
    state = _timm_state()
    path = _save(state, tmp_path / f"w{suffix}")
    clf = build_classifier(ENCODER, weights=str(path)).state_dict()
    unused = [k for k, v in state.items() if not (k in clf and torch.equal(clf[k], v))]
    assert unused == ["classifier.weight", "classifier.bias"]  # the 1000-class head
    assert clf["classifier.weight"].shape == (1, 1024)
    seg = build_segmenter(ModelConfig(encoder=ENCODER, pretrained=False, head_channels=8,
                                      weights=str(path))).encoder.state_dict()
    assert seg and all(torch.equal(v, state[k]) for k, v in seg.items())


def test_a_backbone_without_head_fills_the_classifier(tmp_path):
    """Foundation-model files often hold the backbone alone (``num_classes=0``)."""
    state = _timm_state(num_classes=0)
    assert not any(k.startswith("classifier") for k in state)
    clf = build_classifier(ENCODER, weights=str(_save(state, tmp_path / "w.safetensors")))
    own = clf.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())


def test_without_a_head_the_model_must_be_filled_entirely(tmp_path):
    state = _timm_state(num_classes=0)
    model = timm.create_model(ENCODER, pretrained=False)
    with pytest.raises(MixsupError, match=r"2 of the model's not in the file \(first: "
                                          r"classifier.weight, classifier.bias\)"):
        load_weights_into(model, _save(state, tmp_path / "w.pth"))
    load_weights_into(model, tmp_path / "w.pth", head=("classifier",))


def _refusal(state: dict[str, torch.Tensor], path: Path) -> str:
    _save(state, path)
    with pytest.raises(MixsupError) as err:
        build_classifier(ENCODER, weights=str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: the weights do not fit the model")
    assert message.count("\n") == 0
    return message


def test_a_file_for_another_architecture_is_refused(tmp_path):
    message = _refusal(_timm_state("efficientnet_lite0"), tmp_path / "lite0.pth")
    assert "of the model's not in the file (first: blocks.0.0.se.conv_reduce.weight" in message
    assert "of the file's not in the model (first: blocks.3.2.conv_pw.weight" in message
    assert "of another shape (first: conv_stem.weight (32, 3, 3, 3) in the file, " \
           "(16, 3, 3, 3) in the model" in message
    assert "prefix" not in message


@pytest.mark.parametrize("prefix", ["module.", "model."])
def test_a_file_whose_names_carry_a_prefix_is_refused(tmp_path, prefix):
    state = {prefix + k: v for k, v in _timm_state().items()}
    message = _refusal(state, tmp_path / "w.pth")
    assert f"not in the model (first: {prefix}conv_stem.weight" in message
    assert f"carry a prefix '{prefix}'" in message


def test_a_partial_file_is_refused(tmp_path):
    state = _timm_state()
    del state["blocks.5.0.conv.weight"]
    message = _refusal(state, tmp_path / "w.safetensors")
    assert "1 of the model's not in the file (first: blocks.5.0.conv.weight)" in message


def test_a_file_that_is_no_state_dict_is_refused(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"epoch": 3, "conv.weight": torch.zeros(1)}, path)
    with pytest.raises(MixsupError, match="not a state_dict"):
        build_classifier(ENCODER, weights=str(path))
