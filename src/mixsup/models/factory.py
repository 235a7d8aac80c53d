"""Build θ1 from the config."""

from __future__ import annotations

from mixsup.config import ModelConfig
from mixsup.models.dla_up import DLAUpSegmenter


def build_segmenter(cfg: ModelConfig) -> DLAUpSegmenter:
    model = DLAUpSegmenter(cfg.encoder, pretrained=cfg.pretrained,
                           head_channels=cfg.head_channels)
    if cfg.weights:
        from mixsup.artefacts import load_weights_into

        load_weights_into(model.encoder, cfg.weights)
    return model
