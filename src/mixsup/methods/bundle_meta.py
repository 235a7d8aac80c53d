"""``bundle.json`` as a typed record: what a bundle says about its models (mode, preprocessing,
threshold, training history), read and checked in one place. Torch-free, so that the viewer
can read a bundle's mode without loading the models (``methods.bundle`` loads them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from mixsup.config import TissueConfig
from mixsup.errors import MixsupError
from mixsup.storage.user_files import finite, parse_json, read_text

BUNDLE_FORMAT = "mixsup-bundle-v1"
BUNDLE_FIX = "re-export the bundle from its run folder (mixsup train --resume), or restore it"


class _Record(BaseModel):
    # A key this mixsup does not know (one a later version writes) is kept, not refused.
    model_config = ConfigDict(frozen=True, extra="allow")


class InputNorm(_Record):
    """A model's input: RGB times ``scale`` (1/255), then (x - mean) / std, inside the model;
    resized on the device to ``resize_to`` pixels a side where that is set (a 224-px ViT)."""

    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_to: int | None = None


class Preprocessing(_Record):
    """How a slide becomes the models' input: the tiling, the tissue mask, each model's input
    normalisation, and what is stored and ranked per slide."""

    mpp: float
    patch_size: int
    overlap: int
    normalisation: dict[str, InputNorm]  # "theta1", and "theta2" where the mode has one
    map_downsample: int  # stored map side = patch side / this
    top_k: int
    tissue: TissueConfig
    # the reference stain every patch is mapped onto (stain.normalise); None: not normalised
    stain: dict[str, Any] | None = None

    @field_validator("normalisation", mode="before")
    @classmethod
    def _keyed_by_model(cls, value: Any) -> Any:
        # the first bundles wrote θ1's normalisation alone, not keyed by model
        if isinstance(value, dict) and "mean" in value:
            return {"theta1": value}
        return value


class ModelFile(_Record):
    """One model of the bundle: its encoder and weights file in the bundle folder."""

    encoder: str
    init: str | None = None  # θ2's starting point (stage2.init); θ1 has none
    file: str


class BundleMeta(_Record):
    """``bundle.json``. The training keys (from ``selected_round`` on) are those the mode's
    trainer passes to ``export_bundle``; a mode leaves out the ones it has no use for."""

    format: str
    mixsup_version: str
    mode: str = "mixed"  # bundles from before the modes registry are all mixed
    preprocessing: Preprocessing
    theta1: ModelFile  # the segmenter, or the MIL modes' patch classifier
    theta2: ModelFile | None = None  # None: a mode without θ2
    # train slides θ1 learnt from; None in bundles that did not list them
    theta1_slides: list[str] | None = None
    selected_round: int | None = None  # None: a mode without EM rounds
    select_by: str | None = None
    selection: dict[str, Any] | None = None  # the round choice, as train.selection writes it
    stage2_losses: dict[str, dict[str, Any]] | None = None  # per round
    operating_threshold: float
    threshold_source: str | None = None
    mil_losses: list[float] | None = None
    abmil_losses: list[float] | None = None
    abmil_val_losses: list[float] | None = None
    selected_epoch: int | None = None
    features: str | None = None  # abmil: the training's feature folder
    features_fingerprint: dict[str, Any] | None = None  # what those features depend on
    config: dict[str, Any]  # the run's whole config, as written (``config.validate`` reads it)
    created: str | None = None  # ISO time of the export


def read_bundle_meta(path: Path) -> BundleMeta:
    """A ``bundle.json`` file's record; anything that does not fit it is one ``MixsupError``
    naming the file.

    Args:
        path: The ``bundle.json`` file.

    Returns:
        The checked record; its ``config`` is still a plain mapping.

    Example:
        >>> read_bundle_meta(Path("runs/r1/bundle/bundle.json")).mode  # doctest: +SKIP
        'mixed'
    """
    doc = parse_json(read_text(path, "bundle.json"), path, "bundle.json")
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise MixsupError("unknown bundle format", "re-export it with this mixsup", path)
    if not isinstance(doc.get("config"), dict):
        raise MixsupError("the bundle has no config", "re-export it with this mixsup", path)
    finite(doc.get("operating_threshold"), "operating_threshold", path, low=0.0, high=1.0)
    if doc.get("theta2") is not None and not isinstance(doc.get("theta2"), dict):
        raise MixsupError(f"theta2 is {str(doc.get('theta2'))[:40]!r}, neither null nor the "
                          "θ2 record", BUNDLE_FIX, path)
    try:
        return BundleMeta.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise MixsupError(f"bundle.json's {where}: {first['msg']}", BUNDLE_FIX, path) from None
