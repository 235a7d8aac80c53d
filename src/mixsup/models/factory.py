"""Build θ1 and the patch classifiers (θ2, MIL) from the config, with their encoder's input
normalisation and, where ``pretrained`` names packaged weights, those weights."""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from mixsup.config import ModelConfig
from mixsup.errors import MixsupError
from mixsup.models.dla_up import DLAUpSegmenter
from mixsup.models.encoders import PACKAGED, InputNorm, input_norm, load_packaged


def build_segmenter(cfg: ModelConfig, load_weights: bool = True) -> DLAUpSegmenter:
    """``load_weights=False`` builds the same network (and input normalisation) for a
    checkpoint to be loaded into."""
    packaged = cfg.pretrained and cfg.encoder in PACKAGED
    mean, std = input_norm(cfg.encoder, cfg.pretrained)
    model = DLAUpSegmenter(cfg.encoder, pretrained=load_weights and cfg.pretrained and not
                           packaged, head_channels=cfg.head_channels, mean=mean, std=std)
    if packaged and load_weights:
        load_packaged(model.encoder, cfg.encoder)
    if cfg.weights and load_weights:
        from mixsup.artefacts import load_weights_into

        load_weights_into(model.encoder, cfg.weights)
    return model


def _normalise_input(module: nn.Module, args: tuple) -> tuple:
    return (module.input_norm(args[0]), *args[1:])


def build_classifier(encoder: str, pretrained: bool = False,
                     load_weights: bool = True) -> nn.Module:
    """A timm classifier with one logit. The input normalisation runs as a forward pre-hook so
    that parameter names stay timm's (local ``--weights`` files match by name)."""
    packaged = pretrained and encoder in PACKAGED
    model = timm.create_model(encoder, pretrained=load_weights and pretrained and not packaged,
                              num_classes=1)
    if packaged and load_weights:
        load_packaged(model, encoder)
    model.input_norm = InputNorm(*input_norm(encoder, pretrained))
    model.register_forward_pre_hook(_normalise_input)
    return model


ENCODER_PREFIX = "encoder."


def init_from_segmenter(classifier: nn.Module, segmenter_state: dict[str, Any]) -> list[str]:
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
                          "stage2.init_from_theta1=false")
    classifier.load_state_dict(enc, strict=False)
    return sorted(set(own) - set(enc))
