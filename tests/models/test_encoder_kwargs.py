"""Issue 39: ``encoder_kwargs`` (stage2.*, abmil.*, mil.*) are checked where they enter. The
values whose range needs no timm (``in_chans``, dropout rates, reserved keys) when the config
is read; the names against the constructor the encoder builds, and ``global_pool`` against the
poolings it has, before anything is built; whatever timm still raises building the model is
one error naming the config key and the argument. Never a TypeError, an AssertionError, or a
network that builds and fails on its first batch."""

from __future__ import annotations

import json

import pytest

from mixsup.cli import main
from mixsup.config import load_config
from mixsup.errors import ConfigError
from mixsup.models.encoders import model_class
from mixsup.models.factory import build_embedder, build_theta2

SECTIONS = ("stage2", "abmil")


def _config(section: str, kwargs: dict, encoder: str | None = None):
    overrides = ["stage2.init=encoder", f"{section}.encoder_kwargs={json.dumps(kwargs)}"]
    if encoder:
        overrides.append(f"{section}.encoder={encoder}")
    return load_config("tiny", overrides=overrides)


def _build(section: str, kwargs: dict, encoder: str | None = None):
    cfg = _config(section, kwargs, encoder)
    if section == "stage2":
        return build_theta2(cfg.model, cfg.stage2, load_weights=False)
    return build_embedder(cfg.abmil, load_weights=False)


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("kwargs,says", [
    ({"in_chans": 0}, "in_chans is 0"), ({"in_chans": 7}, "in_chans is 7"),
    ({"in_chans": True}, "in_chans is True"),
    ({"drop_rate": -5}, "drop_rate is -5"), ({"drop_path_rate": 1}, "drop_path_rate is 1"),
    ({"attn_drop_rate": "x"}, "attn_drop_rate is 'x'"), ({"drop_rate": True}, "drop_rate"),
    ({"num_classes": 2}, "may not set num_classes"),
])
def test_values_out_of_range_are_refused_when_the_config_is_read(section, kwargs, says):
    with pytest.raises(ConfigError, match=f"{section}.encoder_kwargs") as err:
        _config(section, kwargs)
    assert says in str(err.value)


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("encoder", ["resnet18", "vit_tiny_patch16_224"])
def test_an_unknown_argument_is_named_with_a_close_one(section, encoder):
    with pytest.raises(ConfigError, match=f"{section}.encoder_kwargs") as err:
        _build(section, {"nosuch_key": 1}, encoder)
    assert "takes no argument 'nosuch_key'" in str(err.value)
    with pytest.raises(ConfigError, match="did you mean drop_rate") as err:
        _build(section, {"drop_rat": 0.1}, encoder)
    assert f"{section}.encoder_kwargs" in str(err.value)


def test_an_argument_of_another_family_is_refused():
    with pytest.raises(ConfigError, match="takes no argument 'drop_path_rate'.*drop_rate"):
        _build("stage2", {"drop_path_rate": 0.1}, "dla34")  # DLA has no stochastic depth


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("encoder,pool,allowed", [
    ("resnet18", "nosuch", "avgmax"), ("vit_tiny_patch16_224", "nosuch", "token"),
    ("resnet18", "", "avg"), ("vit_tiny_patch16_224", "", "map"),
])
def test_global_pool_must_be_one_the_family_has(section, encoder, pool, allowed):
    with pytest.raises(ConfigError, match=f"{section}.encoder_kwargs: global_pool") as err:
        _build(section, {"global_pool": pool}, encoder)
    assert allowed in err.value.fix
    if not pool:
        assert "no pooling" in str(err.value)


def test_what_timm_raises_building_is_one_error_naming_the_argument():
    with pytest.raises(ConfigError, match="abmil.encoder_kwargs.*class_token=False.*Token "
                       "pooling needs the class token"):
        _build("abmil", {"class_token": False}, "vit_tiny_patch16_224")
    # RegNet takes **kwargs, so the name cannot be checked first: timm's TypeError is reworded
    with pytest.raises(ConfigError, match="stage2.encoder_kwargs.*nosuch_key"):
        _build("stage2", {"nosuch_key": 1}, "regnetx_002")


def test_good_arguments_still_build():
    net = _build("stage2", {"drop_rate": 0.1, "drop_path_rate": 0.05, "global_pool": "max",
                            "in_chans": 3}, "resnet18")
    assert net.get_classifier().out_features == 1
    _build("abmil", {"global_pool": "avg", "drop_path_rate": 0.1}, "vit_tiny_patch16_224")


def test_the_constructor_is_found_for_recipes_and_forwarding_entrypoints():
    vit = model_class("vit_large_patch16_224")  # uni's timm name
    assert vit is not None and vit.name == "VisionTransformer"
    assert vit.arguments is not None and "init_values" in vit.arguments
    assert "token" in (vit.pools or ())
    assert model_class("regnetx_002").arguments is None  # **kwargs: not checked by name


@pytest.mark.parametrize("extra,kwargs", [
    (["--mode", "mixed", "--set", "stage2.init=encoder"], {"nosuch_key": 1}),
    (["--mode", "mixed", "--set", "stage2.init=encoder"], {"global_pool": "nosuch"}),
    (["--mode", "abmil"], {"in_chans": 7}),
])
def test_train_refuses_them_before_the_run_folder_exists(shapes_data, tmp_path, capsys, extra,
                                                         kwargs):
    section = "abmil" if "abmil" in extra else "stage2"
    out = tmp_path / "run"
    code = main(["-q", "train", str(shapes_data), "--out", str(out), "--preset", "tiny", *extra,
                 "--set", f"{section}.encoder_kwargs={json.dumps(kwargs)}"])
    err = capsys.readouterr().err
    assert code == 2 and f"{section}.encoder_kwargs" in err and next(iter(kwargs)) in err, err
    assert not out.exists()


def test_features_refuses_them_before_writing(shapes_data, tmp_path, capsys):
    out = tmp_path / "feats"
    code = main(["-q", "features", str(shapes_data), "--out", str(out), "--preset", "tiny",
                 "--set", 'abmil.encoder_kwargs={"nosuch_key": 1}'])
    err = capsys.readouterr().err
    assert code == 2 and "abmil.encoder_kwargs" in err and "nosuch_key" in err, err
    assert not out.exists() or not any(out.iterdir())
