"""What a training run checks before it creates its folder: a failed check leaves nothing
behind, so the corrected command starts a fresh run instead of being told to ``--resume``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mixsup.config import Config, EncoderSpec, ModelConfig
from mixsup.errors import MixsupError
from mixsup.inference.features import check_claim, fingerprint
from mixsup.inference.trident_features import open_folder
from mixsup.labels.annotations import read_annotations
from mixsup.labels.regions import SlideAnnotations
from mixsup.labels.table import Dataset, SlideRecord
from mixsup.methods.registry import Mode, get_mode
from mixsup.models.encoders import PACKAGED, packaged_file
from mixsup.models.factory import build_theta2
from mixsup.runtime.device import check_runtime
from mixsup.slides.reader import open_slide

log = logging.getLogger(__name__)


@dataclass
class CheckedInputs:
    annotations: dict[str, SlideAnnotations] = field(default_factory=dict)  # by slide id
    rejected: dict[str, str] = field(default_factory=dict)  # slide id -> why labels unusable


def check_training(data: Dataset, cfg: Config, mode: str, strict: bool) -> CheckedInputs:
    """Raise ``MixsupError`` for anything that would stop ``mode`` later; return the parsed
    pixel labels of the train slides (none for the image mode, which does not use them)."""
    table = data.root / "slides.csv"
    train = data.split("train")
    if {0, 1} - {r.label for r in train}:
        raise MixsupError("training needs positive (label 1) and negative (label 0) train slides",
                          "label at least one slide of each class with split=train", table)
    spec = get_mode(mode)
    if (spec.theta2 and cfg.stage2.select_by == "val"
            and all(r.label is None for r in data.split("val"))):
        raise MixsupError("selecting the round by val loss needs labelled val slides",
                          "label some val slides, or select by train_loss", table)
    if spec.cached_features and cfg.stain.normalise != "none":
        raise MixsupError(f"stain.normalise={cfg.stain.normalise} is not available for "
                          f"--mode {mode}: its features are computed once by `mixsup "
                          "features`, before training", "set stain.normalise=none for this "
                          "mode")
    if cfg.stain.reference_slide is not None and cfg.stain.normalise != "none" and (
            cfg.stain.reference_slide not in {r.slide_id for r in train}):
        raise MixsupError(f"stain.reference_slide {cfg.stain.reference_slide!r} is not a "
                          "split=train slide", "name a training slide_id, or unset it to fit "
                          "the reference on all training slides", table)
    check_runtime(cfg.runtime)
    section = getattr(cfg, spec.section)
    foreign = spec.cached_features and section.features_format != "mixsup"
    if foreign:  # features made elsewhere: no encoder of mixsup's is built or run; each
        # training slide's file is opened before the run folder exists
        open_folder(Path(section.features), dict(enumerate(r.slide_id for r in train)))
    else:
        _check_weights(cfg, spec)
        _build_models(cfg, spec)
        if spec.cached_features and section.features:  # a folder of other features
            check_claim(Path(section.features), fingerprint(cfg, section))
    if spec.cached_features and not foreign and not (section.pretrained or section.weights):
        log.warning("%s.encoder %s has no weights (pretrained false, no weights file): its "
                    "frozen features are those of a random network; set %s.weights or "
                    "%s.pretrained", spec.section, section.encoder, spec.section, spec.section)
    if strict:  # otherwise tiling skips and lists bad slides
        for rec in [*train, *data.split("val")]:
            with open_slide(rec.path, cfg.reader.backend, cfg.reader.mpp,
                            cfg.reader.cache_bytes) as slide:
                _ = slide.mpp  # raises MissingMPPError
    if not spec.segmenter:  # the patch models learn from slide labels alone
        return CheckedInputs()
    checked = read_train_annotations(train, cfg, strict)
    if not checked.annotations:
        raise MixsupError("no train slide has usable pixel annotations",
                          "add annotations/<slide_id>.geojson (Tumor outlines, optionally an "
                          "ROI) for some train slides, or use --mode image", data.root)
    return checked


def read_train_annotations(records: list[SlideRecord], cfg: Config,
                           strict: bool) -> CheckedInputs:
    """Parse every annotation against its slide's size; a bad file is an error with
    ``strict``, else a warning and the slide trains on its slide label only."""
    out = CheckedInputs()
    for rec in records:
        if rec.annotation is None:
            continue
        try:
            with open_slide(rec.path, cfg.reader.backend, cfg.reader.mpp,
                            cfg.reader.cache_bytes) as slide:
                dims = slide.dimensions
        except MixsupError:
            if strict:
                raise
            continue  # tiling skips the slide and lists why
        try:
            out.annotations[rec.slide_id] = read_annotations(rec.annotation, cfg.annotations,
                                                             dims, rec.label)
        except MixsupError as exc:
            if strict:
                raise
            log.warning("ignoring the pixel labels of %s: %s", rec.slide_id, exc)
            out.rejected[rec.slide_id] = str(exc)
    return out


def _build_models(cfg: Config, mode: Mode) -> None:
    """Build the networks ``mode`` trains, with their weights: an unknown encoder, or a
    weights file that does not load or fit, stops the run before its folder exists."""
    with torch.random.fork_rng(devices=[]):  # the run's seeded draws stay as they were
        mode.build_theta1(cfg)
        if mode.theta2:
            build_theta2(cfg.model, cfg.stage2)


def _check_weights(cfg: Config, mode: Mode) -> None:
    """Local weights files exist and packaged pretrained weights are installed."""
    models: list[ModelConfig | EncoderSpec] = [getattr(cfg, mode.section)]
    if mode.theta2:
        models.append(cfg.stage2)
    for m in models:
        if m.weights and not Path(m.weights).is_file():
            raise MixsupError("weights file not found",
                              "check --weights or the *.weights settings", m.weights)
        if m.pretrained and m.encoder in PACKAGED:
            packaged_file(m.encoder)  # raises, naming the package to install
