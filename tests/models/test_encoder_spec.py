"""Foundation-model encoders through the config's spec: timm arguments (LayerScale's
init_values), input size, normalisation and a local weights file, the path a user takes minus
the download. The real weights are never fetched: the same timm architectures are built with
random weights (a ViT-S/16 stands in for UNI's ViT-L/16; every recipe is built on the meta
device)."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mixsup.config.schema import ConfigError, EncoderSpec, MILConfig, load_config
from mixsup.errors import MixsupError
from mixsup.models.encoders import input_norm, timm_build
from mixsup.models.factory import build_classifier
from mixsup.models.recipes import IMAGENET_MEAN, RECIPES

VIT = "vit_small_patch16_224"
UNI_LIKE = {"img_size": 224, "patch_size": 16, "init_values": 1e-5, "dynamic_img_size": True}


def _backbone_file(tmp_path, **kwargs):
    """A backbone saved as foundation models ship theirs: no head, safetensors."""
    torch.manual_seed(0)
    state = timm.create_model(VIT, pretrained=False, num_classes=0, **kwargs).state_dict()
    path = tmp_path / "pytorch_model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return state, path


def test_layerscale_weights_load_only_with_the_recipe_arguments(tmp_path):
    state, path = _backbone_file(tmp_path, **UNI_LIKE)
    assert any(k.endswith("ls1.gamma") for k in state)  # LayerScale: UNI's init_values
    spec = EncoderSpec(encoder=VIT, weights=str(path), encoder_kwargs=UNI_LIKE)
    model = build_classifier(VIT, weights=str(path), spec=spec)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())
    # Without init_values the network has no LayerScale tensors: strict loading names them.
    with pytest.raises(MixsupError, match="ls1.gamma"):
        build_classifier(VIT, weights=str(path), spec=EncoderSpec(encoder=VIT,
                                                                   weights=str(path)))


def test_patches_are_resized_to_the_encoder_input(tmp_path):
    spec = EncoderSpec(encoder=VIT, encoder_kwargs={"img_size": 224}, input_size=224)
    torch.manual_seed(0)
    model = build_classifier(VIT, spec=spec).eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        got = model(x)
        model.input_norm.size = None  # the same network fed the resized patch by hand
        want = model(F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False))
    assert got.shape == (2, 1)
    torch.testing.assert_close(got, want)


def test_normalisation_order():
    h0 = RECIPES["h-optimus-0"]
    assert input_norm("h-optimus-0", True) == (h0.mean, h0.std)
    own = EncoderSpec(encoder="h-optimus-0", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert input_norm("h-optimus-0", True, own) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    # timm's pretrained_cfg where weights are loaded (CLIP's constants), else ImageNet
    clip = "vit_base_patch16_clip_224"
    assert input_norm(clip, False, EncoderSpec(encoder=clip, weights="w.pth"))[0] == \
        tuple(timm.models.get_pretrained_cfg(clip).mean) != IMAGENET_MEAN
    assert input_norm(clip, False, EncoderSpec(encoder=clip))[0] == IMAGENET_MEAN


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_builds_with_one_logit(name):
    build = timm_build(name)
    with torch.device("meta"):  # shapes only: ViT-G costs no memory here
        model = timm.create_model(build.name, pretrained=False, num_classes=1, **build.kwargs)
        out = model(torch.empty(1, 3, build.input_size or 224, build.input_size or 224))
    assert out.shape == (1, 1)
    assert any(k.endswith("ls1.gamma") for k in model.state_dict())  # all use LayerScale


def test_a_recipe_never_downloads():
    with pytest.raises(MixsupError, match="not downloaded by mixsup"):
        build_classifier("uni", pretrained=True, spec=EncoderSpec(encoder="uni",
                                                                 pretrained=True))


@pytest.mark.parametrize("bad,needle", [
    ({"checkpoint_path": "x.pth"}, "may not set checkpoint_path"),
    ({"pretrained_cfg_overlay": "x"}, "may not set pretrained_cfg_overlay"),
])
def test_kwargs_that_would_load_or_fetch_are_refused(bad, needle):
    with pytest.raises(ValueError, match=needle):
        MILConfig(encoder_kwargs=bad)


def test_the_spec_reads_from_a_config_file(tmp_path):
    f = tmp_path / "uni.yaml"
    f.write_text("stage2:\n  init: encoder\n  encoder: uni\n"
                 "  weights: /models/uni/pytorch_model.bin\n"
                 "  encoder_kwargs: {dynamic_img_size: false}\n")
    cfg = load_config("small", [f])
    build = timm_build(cfg.stage2.encoder, cfg.stage2)
    assert build.name == "vit_large_patch16_224" and build.input_size == 224
    assert build.kwargs["init_values"] == 1e-5 and build.kwargs["dynamic_img_size"] is False
    f.write_text("mil:\n  encoder_kwargs: {checkpoint_path: evil.pth}\n")
    with pytest.raises(ConfigError, match="checkpoint_path"):
        load_config("small", [f])


def test_a_spec_theta2_does_not_use_is_refused():
    with pytest.raises(ConfigError, match="stage2.input_size is unused"):
        load_config("tiny", overrides=["stage2.init=theta1", "stage2.input_size=224"])


@pytest.mark.parametrize(("name", "says"), [
    ("nosuchmodel", "unknown encoder"), ("RESNET18", "close: resnet18"),
    ("resnet18.nosuchtag", "no pretrained tag"), ("hf-hub:MahmoodLab/UNI", "hub repository"),
    ("timm/resnet18.a1_in1k", "hub repository"), ("a;b", "unknown encoder"),
    ("../x", "hub repository"), ("", "hub repository"),
])
def test_an_encoder_name_is_checked_offline_before_anything_is_built(name, says):
    from mixsup.errors import MixsupError
    from mixsup.models.encoders import check_encoder

    with pytest.raises(MixsupError, match=says):
        check_encoder(name)


def test_real_encoder_names_pass_the_check():
    from mixsup.models.encoders import check_encoder

    for name in ("resnet18", "resnet18.a1_in1k", "efficientnet_lite0", "dla34", "uni"):
        check_encoder(name)
