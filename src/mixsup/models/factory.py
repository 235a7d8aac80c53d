"""Build θ1 and the patch classifiers (θ2, MIL) from the config, with their encoder's input
normalisation and, where ``pretrained`` names packaged weights, those weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import timm
import torch
from torch import nn

from mixsup.config import Config, EncoderSpec, ModelConfig, Stage2Config
from mixsup.errors import MixsupError
from mixsup.models.dla_up import DLAUpSegmenter
from mixsup.models.encoders import (
    PACKAGED,
    InputNorm,
    build_error,
    check_encoder,
    check_encoder_kwargs,
    classifier_head,
    input_norm,
    load_packaged,
    timm_build,
    trunk_head,
)
from mixsup.models.freeze import freeze_early_stages
from mixsup.models.logit_head import reset_logit_head
from mixsup.models.max_logit import MaxLogitClassifier
from mixsup.models.recipes import RECIPES


def build_segmenter(cfg: ModelConfig, load_weights: bool = True) -> DLAUpSegmenter:
    """``load_weights=False`` builds the same network (and input normalisation) for a
    checkpoint to be loaded into."""
    check_encoder(cfg.encoder)
    packaged = cfg.pretrained and cfg.encoder in PACKAGED
    mean, std = input_norm(cfg.encoder, cfg.pretrained)
    model = DLAUpSegmenter(cfg.encoder, pretrained=load_weights and cfg.pretrained and not
                           packaged, head_channels=cfg.head_channels, mean=mean, std=std)
    if load_weights and (packaged or cfg.weights):
        head = trunk_head(cfg.encoder, model.encoder)
        if packaged:
            load_packaged(model.encoder, cfg.encoder, head)
        if cfg.weights:
            from mixsup.storage.artefacts import load_weights_into

            load_weights_into(model.encoder, cfg.weights, head)
    freeze_early_stages(model.encoder, cfg.freeze_stages, cfg.encoder)
    return model


def _normalise_input(module: nn.Module, args: tuple) -> tuple:
    norm = cast(InputNorm, module.input_norm)  # set by build_classifier
    return (norm(args[0]), *args[1:])


def build_classifier(encoder: str, pretrained: bool = False, load_weights: bool = True,
                     weights: str | None = None, spec: EncoderSpec | None = None) -> nn.Module:
    """A timm classifier with one logit, its head fresh; ``weights``: a local file for the rest
    (loaded strictly); ``spec``: a recipe's or the config's create_model arguments, input
    size and normalisation. The input normalisation (and resize) runs as a forward pre-hook
    so that parameter names stay timm's (local weights files match by name)."""
    build = timm_build(encoder, spec)
    check_encoder_kwargs(encoder, spec)
    recipe = RECIPES.get(encoder)
    if recipe and pretrained and not weights and load_weights:
        raise MixsupError(f"{encoder}'s weights are not downloaded by mixsup",
                          f"download them yourself ({recipe.weights}) and name the file in "
                          "`weights` beside the encoder")
    packaged = pretrained and encoder in PACKAGED
    try:
        model = timm.create_model(build.name, pretrained=load_weights and pretrained and not
                                  packaged and recipe is None, num_classes=1, **build.kwargs)
    except Exception as exc:  # TypeError, AssertionError...: what the user's arguments did
        if spec is None or not spec.encoder_kwargs or isinstance(exc, OSError):
            raise
        raise build_error(encoder, spec, exc) from exc
    for name in classifier_head(model):  # timm's TF-style init: one logit's weights U(-1, 1)
        reset_logit_head(model.get_submodule(name))
    if packaged and load_weights:
        load_packaged(model, encoder, classifier_head(model))
    if weights and load_weights:
        from mixsup.storage.artefacts import load_weights_into

        load_weights_into(model, weights, classifier_head(model))
    model.input_norm = InputNorm(*input_norm(encoder, pretrained, spec), size=build.input_size)
    model.register_forward_pre_hook(_normalise_input)
    return model


def theta1_segmenter(cfg: Config, load_weights: bool = True) -> nn.Module:
    """The segmenter modes' θ1 (``methods.registry``)."""
    return build_segmenter(cfg.model, load_weights)


def theta1_classifier(cfg: Config, load_weights: bool = True) -> nn.Module:
    """The image-level MIL baseline's patch classifier (``methods.registry``)."""
    return build_classifier(cfg.mil.encoder, cfg.mil.pretrained, load_weights, cfg.mil.weights,
                            spec=cfg.mil)


def build_embedder(spec: EncoderSpec, load_weights: bool = True) -> nn.Module:
    """``build_classifier`` without a head: a patch -> its pooled feature vector
    (``embedding_dim`` long), for cached features and attention MIL. An encoder without
    weights (a test's, or a baseline's) starts from seed 0, so that its features, cached once,
    match the encoder a bundle ships."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_classifier(spec.encoder, spec.pretrained, load_weights, spec.weights,
                                 spec=spec)
    cast(Any, model).reset_classifier(0)
    return model


def embedding_dim(embedder: nn.Module) -> int:
    """The length of ``build_embedder``'s output: timm's ``head_hidden_size`` where a model
    has a layer after the pooling (MobileNetV3's conv_head), else ``num_features``."""
    m = cast(Any, embedder)
    return int(getattr(m, "head_hidden_size", None) or m.num_features)


StateDict = Mapping[str, torch.Tensor]
ENCODER_PREFIX = "encoder."


def init_from_segmenter(classifier: nn.Module, segmenter_state: StateDict) -> list[str]:
    """Copy a θ1 checkpoint's encoder into a classifier with the same timm encoder.

    A features-only encoder's names are the classifier's own (``blocks.0.0.conv.weight``); the
    classifier's head (for EfficientNet also ``conv_head``/``bn2``) keeps its own weights.
    Returns the names left as they were; refuses when any encoder tensor has no counterpart.
    """
    own = classifier.state_dict()
    enc = {k[len(ENCODER_PREFIX):]: v for k, v in segmenter_state.items()
           if k.startswith(ENCODER_PREFIX)}
    bad = sorted(k for k, v in enc.items() if k not in own or own[k].shape != v.shape)
    if not enc or bad:
        raise MixsupError("θ1's encoder does not fit θ2's network"
                          + (f" (first mismatch: {bad[0]})" if bad else " (no encoder tensors)"),
                          "use the same encoder for model.encoder and stage2.encoder, or set "
                          "stage2.init=encoder")
    classifier.load_state_dict(enc, strict=False)
    return sorted(set(own) - set(enc))


def build_theta2(model: ModelConfig, s2: Stage2Config,
                 theta1_state: StateDict | None = None,
                 load_weights: bool = True) -> nn.Module:
    """θ2 as ``stage2.init`` says: its own encoder (``encoder``), that encoder started from
    θ1's (``theta1_encoder``), or θ1 itself with a max-logit head (``theta1``).
    ``theta1_state`` is the round's θ1 checkpoint; ``load_weights=False`` builds the network
    for a saved θ2 to be loaded into."""
    if s2.init == "theta1":
        if s2.freeze_stages is not None:
            model = model.model_copy(update={"freeze_stages": s2.freeze_stages})
        theta1 = MaxLogitClassifier(build_segmenter(model, load_weights=False))
        if theta1_state is not None:
            theta1.segmenter.load_state_dict(theta1_state)
        return theta1
    net: nn.Module = build_classifier(s2.encoder, s2.pretrained, load_weights, s2.weights,
                                      spec=s2)
    if s2.init == "theta1_encoder" and theta1_state is not None:
        init_from_segmenter(net, theta1_state)
    return net


def theta2_input(model: ModelConfig, s2: Stage2Config) -> tuple[str, bool]:
    """The (encoder, pretrained) pair that sets θ2's input normalisation."""
    return (model.encoder, model.pretrained) if s2.init == "theta1" else (s2.encoder,
                                                                          s2.pretrained)
