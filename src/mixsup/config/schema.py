"""One frozen configuration tree: a preset, optional YAML files and ``--set`` overrides.

It is validated once, here at the edge; everything downstream receives typed, frozen objects.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mixsup.config.protocols import apply_protocol
from mixsup.errors import ConfigError
from mixsup.storage.user_files import parse_yaml, read_text

PRESETS = ("paper", "small", "tiny")
# Microns per pixel that a real scan can have (40x is 0.25, a 1.25x thumbnail 8): values
# outside are typos or broken metadata, and 1e-4 would tile petabytes.
MPP_RANGE = (0.01, 100.0)
# Decoded-tile cache per process (reader.cache_bytes), shared by the process's open slides.
READER_CACHE_BYTES = 32 * 1024 * 1024
# θ2 reads a slide's top-K patches into memory at once (K x 512 x 512 x 3 bytes a slide, and
# the whole slide's patches at predict time when K exceeds them): far above the paper's 16,
# this is a typo or a tampered bundle that would exhaust the memory.
MAX_TOP_K = 1024


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # YAML's true would otherwise be 1.0
        raise ValueError("a boolean is not a number")
    return value


Mpp = Annotated[float, BeforeValidator(_not_bool), Field(ge=MPP_RANGE[0], le=MPP_RANGE[1])]
Count = Annotated[int, BeforeValidator(_not_bool)]  # a number of things, never YAML's true
AnnotationRole = Literal["tumor", "negative", "roi", "ignore"]


class _Frozen(BaseModel):
    # NaN and infinity are no setting's value (tissue.thumbnail_mpp=.inf tiled nothing)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ReaderConfig(_Frozen):
    backend: Literal["auto", "tifftiles", "openslide", "tiffslide"] = "auto"
    mpp: Mpp | None = Field(None, description="override for slides without MPP metadata")
    cache_bytes: int = Field(READER_CACHE_BYTES, ge=0, description="decoded-tile cache per "
                             "process, shared by its open slides; tifftiles and the OpenSlide "
                             "it falls back on each keep one, so up to twice this")


class TissueConfig(_Frozen):
    method: Literal["otsu", "grey"] = "otsu"
    thumbnail_mpp: float = Field(8.0, gt=0)
    thumbnail_max_dim: int = Field(4096, ge=64, description="coarser thumbnails past this size")
    min_saturation: int = Field(20, ge=0, le=255, description="Otsu threshold floor (HSV S)")
    grey_threshold: int = Field(204, ge=0, le=255)
    closing_px: int = Field(5, ge=0)
    opening_px: int = Field(3, ge=0)
    min_region_um2: float = Field(20000.0, ge=0)
    fill_holes: bool = True
    source: Literal["otsu", "geojson"] = Field(
        "otsu", description="otsu: detect tissue on the thumbnail (tissue.method); geojson: "
        "read each slide's tissue outlines (level-0 pixels, QuPath GeoJSON, e.g. TRIDENT's or "
        "GrandQC's) from slides.csv's `tissue` column, else tissue.geojson_dir")
    geojson_dir: str | None = Field(None, description="folder of <slide_id>.geojson tissue "
                                    "outlines for tissue.source=geojson (relative to the "
                                    "current folder); slides.csv's `tissue` column wins")
    remove_pen: bool = Field(False, description="take pen ink (saturated blue or green, or "
                             "near black) out of detected tissue")
    pen_min_saturation: int = Field(80, ge=0, le=255, description="HSV saturation from which "
                                    "a blue or green pixel is ink")
    pen_hue_min: float = Field(70.0, ge=0, le=360, description="ink hues, degrees: from")
    pen_hue_max: float = Field(235.0, ge=0, le=360, description="ink hues, degrees: to "
                               "(H&E's haematoxylin starts near 250)")
    pen_max_value: int = Field(30, ge=0, le=255, description="HSV value at or below which a "
                               "pixel is black ink")
    remove_blur: bool = Field(False, description="take blurred regions (low Laplacian "
                              "variance on the thumbnail) out of detected tissue")
    blur_max_variance: float = Field(100.0, ge=0, description="Laplacian variance of the grey "
                                     "thumbnail below which a region is blurred")
    blur_window_um: float = Field(128.0, gt=0, description="side of the region the variance "
                                  "is measured over, microns")

    # Added after stored tilings and feature stores were first keyed on this section: left out
    # of their keys (``identity``) while at their defaults, so that those stay valid. Sound only
    # while each default reproduces the tissue masks made before it (the QC stays off).
    LATER_FIELDS: ClassVar[tuple[str, ...]] = (
        "source", "geojson_dir", "remove_pen", "pen_min_saturation", "pen_hue_min",
        "pen_hue_max", "pen_max_value", "remove_blur", "blur_max_variance", "blur_window_um")

    @model_validator(mode="after")
    def _qc_on_detected_tissue(self) -> TissueConfig:
        if self.source == "geojson" and (self.remove_pen or self.remove_blur):
            raise ValueError("tissue.remove_pen and tissue.remove_blur clean detected tissue; "
                             "with tissue.source=geojson the outlines are used as they are: "
                             "turn them off")
        if self.pen_hue_min > self.pen_hue_max:
            raise ValueError(f"tissue.pen_hue_min ({self.pen_hue_min:g}) is above "
                             f"tissue.pen_hue_max ({self.pen_hue_max:g})")
        return self

    def identity(self) -> dict[str, Any]:
        """The settings that stored tilings and features are keyed on."""
        fields = type(self).model_fields
        at_default = {f for f in self.LATER_FIELDS if getattr(self, f) == fields[f].default}
        return self.model_dump(mode="json", exclude=at_default)


class TilingConfig(_Frozen):
    mpp: Mpp = 0.5
    patch_size: int = Field(512, ge=16)
    overlap: int = Field(128, ge=0)
    min_tissue: float = Field(0.25, ge=0, le=1)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> TilingConfig:
        if self.overlap >= self.patch_size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than patch_size "
                             f"({self.patch_size})")
        return self

    @property
    def stride(self) -> int:
        return self.patch_size - self.overlap


DEFAULT_CLASS_MAP: dict[str, AnnotationRole] = {
    "tumor": "tumor", "tumour": "tumor", "metastasis": "tumor", "_0": "tumor", "_1": "tumor",
    "negative": "negative", "exclusion": "negative", "_2": "negative", "normal": "negative",
    "roi": "roi", "region": "roi", "annotated region": "roi",
    "other": "ignore", "none": "ignore", "ignore": "ignore",
}


MaskRole = Literal["tumor", "negative", "ignore"]
# mixsup's own masks (labels.regions), and ASAP's annotation-to-mask with its default labels
DEFAULT_MASK_VALUES: dict[int, MaskRole] = {0: "negative", 1: "tumor", 255: "ignore"}


class StainConfig(_Frozen):
    normalise: Literal["none", "macenko", "reinhard"] = Field(
        "none", description="map every patch onto a reference stain as it is read, at "
        "training and prediction time (torchstain); the reference is fitted once per run")
    reference_slide: str | None = Field(None, description="fit the reference on this slide's "
                                        "tissue (a slide_id); default: the training slides")
    reference_patches: Count = Field(64, ge=1, le=4096, description="tissue patches the "
                                     "reference is fitted on")


class AnnotationConfig(_Frozen):
    """Class names (case-insensitive) map to a role; extra entries extend the default map.
    A label mask image's pixel values map to a role through ``mask_values``; unset, through
    the map the mask declares (mixsup's PNGs), else ``DEFAULT_MASK_VALUES``."""

    class_map: dict[str, AnnotationRole] = Field(default_factory=dict)
    repair_invalid: bool = True
    unknown_class: Literal["error", "ignore"] = "error"
    # 0/255 masks need --set 'annotations.mask_values={0: negative, 255: tumor}'
    mask_values: dict[int, MaskRole] | None = None

    def role(self, name: str) -> AnnotationRole | None:
        key = name.strip().lower()
        extra = {k.lower(): v for k, v in self.class_map.items()}
        return extra.get(key, DEFAULT_CLASS_MAP.get(key))


class ModelConfig(_Frozen):
    encoder: str = "dla34"
    head_channels: int = Field(64, ge=1)
    pretrained: bool = False
    weights: str | None = Field(None, description="local encoder weights (.pth/.safetensors)")
    freeze_stages: int = Field(0, ge=0, le=8, description="the encoder's first N feature "
                               "stages (and its stem) keep their loaded weights in θ1 (and in "
                               "θ2 with stage2.init=theta1)")

    @model_validator(mode="after")
    def _frozen_weights_are_loaded(self) -> ModelConfig:
        if self.freeze_stages and not (self.pretrained or self.weights):
            raise ValueError("model.freeze_stages keeps the encoder's loaded weights, but none "
                             "are loaded: set model.pretrained=true or model.weights")
        return self


class RuntimeConfig(_Frozen):
    device: str = "auto"  # auto, cpu, cuda, cuda:1 ...
    num_workers: int = Field(1, ge=0)
    amp: bool = True  # autocast on GPU (bf16 where supported)
    # auto: channels_last, but NCHW for inference on a GPU (runtime.use_channels_last)
    layout: Literal["auto", "channels_last", "nchw"] = "auto"
    channels_last: bool = Field(False, description="deprecated, kept so that older runs' "
                                "configs load: true is layout=channels_last, false leaves "
                                "layout as set")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all)")
    sync_bn: bool = False  # SyncBatchNorm across ranks under torchrun (GPU only)
    compile: bool = Field(False, description="torch.compile the forward passes (needs a C "
                          "compiler; the first batches pay the compilation)")
    bn_recalibration_batches: int = Field(32, ge=0, description="precise-BN batches after "
                                          "training; 0 turns it off")
    backend: Literal["auto", "torch", "onnxruntime", "openvino"] = Field(
        "auto", description="inference engine on a CPU (a GPU always runs PyTorch); auto: "
        "OpenVINO, else ONNX Runtime, else PyTorch, whichever is installed")


class TrainingConfig(_Frozen):
    """What every training (θ1, θ2, the MIL baseline) shares, so that the modes differ only in
    their supervision."""

    stain_sigma: float = Field(0.05, ge=0, le=1, description="HED jitter: stain scale "
                               "1 + U(-s, s) (Tellez et al. 2019)")
    stain_bias: float = Field(0.05, ge=0, le=1, description="HED jitter: stain shift U(-b, b)")
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="linear warm-up, share of "
                                   "a fit's steps")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="θ2 and MIL targets "
                                   "s/2 and 1 - s/2")


class Stage1Config(_Frozen):
    rounds: int = Field(3, ge=0)
    epochs_init: int = Field(30, ge=0)
    epochs_per_round: int = Field(30, ge=0)
    steps_per_epoch: int | None = Field(None, ge=1, description="default: one pass over pools")
    batch_size: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0)
    round_lr: float | None = Field(None, gt=0, description="M-step learning rate (default: lr)")
    weight_decay: float = Field(1e-4, ge=0)
    threshold: float = Field(0.4, ge=0, le=1, description="T: drop patches with max p < T")
    reweight: float = Field(4.0, gt=0, description="V: y_p+ = clip(p * V, 0, 1)")
    floor: float = Field(0.01, ge=0, le=1, description="y_p+ values below this become 0")
    pseudo_labels: Literal["soft", "confident"] = Field(
        "soft", description="soft: y_p+ as the paper; confident: 1 where V·p >= 1, 0 below the "
        "floor, the band between left out of the loss")
    positive_keep_top: int = Field(0, ge=0, description="a positive slide with no patch >= T "
                                   "keeps its top this many patches (0: the paper's rule)")
    teacher: Literal["last", "average"] = Field(
        "last", description="the E-step's maps: the last round's θ1 (the paper), or the "
        "pixel-wise average of every round's so far")
    ratio: tuple[float, float, float] = Field((2, 1, 7), description="R = y_p : y_p+ : y_p-")
    fine_tumour_share: float | None = Field(
        None, gt=0, lt=1, description="share of each batch's y_p draws taken from fine "
        "patches whose labels hold tumour (default: drawn uniformly, the paper)")
    map_downsample: int = Field(4, ge=1, description="stored probability map: patch / this")
    min_labelled: float = Field(0.5, ge=0, le=1, description="labelled fraction of a y_p patch")
    negative_fallback: Literal["none", "previous", "random"] = "random"
    negative_topup: int = Field(500, ge=1, description="random negatives added by the fallback")
    # Negative slides' patches are correct whichever round found them: keeping them adds no
    # label noise and stops a shrinking pool from letting the next M-step forget them.
    keep_negatives: bool = Field(False, description="hard negatives accumulate over rounds")
    carry_optimizer: bool = Field(False, description="each M-step continues the previous "
                                  "round's optimiser state instead of a fresh AdamW")
    augment: bool = True
    infer_batch_size: int = Field(64, ge=1)
    collapse_ratio: float = Field(0.2, ge=0, le=1, description="a round whose E-step finds "
                                  "fewer positive-slide patches >= T than this share of the "
                                  "previous round's has collapsed")
    on_collapse: Literal["warn", "rollback"] = Field(
        "rollback", description="rollback: the collapsed round is left out of round selection "
        "and the next round starts again from the last good one")

    @model_validator(mode="after")
    def _ratio_ok(self) -> Stage1Config:
        if any(r < 0 for r in self.ratio) or not 0 < sum(self.ratio) < float("inf"):
            raise ValueError(f"ratio {self.ratio} must be non-negative with a positive sum")
        return self


EncoderKwarg = bool | int | float | str | list[int] | list[float] | None
# create_model arguments mixsup sets itself, or that would load or fetch weights past
# storage/artefacts.py's safe reader (checkpoint_path is a torch.load; pretrained_cfg can name a
# URL).
RESERVED_KWARGS = ("num_classes", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay",
                   "checkpoint_path", "cache_dir", "features_only")
# Every patch is RGB: a network of other input channels builds, then fails on its first batch.
RGB_CHANNELS = 3


def check_kwarg_values(kwargs: dict[str, Any]) -> None:
    """The values of the create_model arguments whose range is known without timm: no
    reserved key, ``in_chans`` 3, dropout rates (``drop_rate``, ``drop_path_rate``,
    ``attn_drop_rate``...) in [0, 1). ``models.encoders.check_encoder_kwargs`` checks the
    rest against the model's constructor, where timm is imported."""
    reserved = sorted(set(kwargs) & set(RESERVED_KWARGS))
    if reserved:
        raise ValueError(f"encoder_kwargs may not set {', '.join(reserved)}: mixsup sets "
                         "the head itself and loads weights only from `weights`")
    if "in_chans" in kwargs and (isinstance(kwargs["in_chans"], bool)
                                 or kwargs["in_chans"] != RGB_CHANNELS):
        raise ValueError(f"in_chans is {kwargs['in_chans']!r}, but patches are RGB: remove "
                         f"in_chans or set it to {RGB_CHANNELS}")
    for key, value in kwargs.items():
        if not (key.endswith("_rate") and "drop" in key):  # drop_path_rate, attn_drop_rate
            continue
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not 0 <= value < 1):  # compared, not made a float: 10**400 overflows
            raise ValueError(f"{key} is {value!r}, not a dropout rate: use a number in "
                             "[0, 1) (0 turns it off)")


class EncoderSpec(_Frozen):
    """A patch classifier's encoder beyond its timm name (θ2, the MIL baselines): a recipe
    name of ``mixsup.models.recipes`` or a timm name, with what foundation models need."""

    encoder: str = "resnet34"
    pretrained: bool = False
    weights: str | None = Field(None, description="local weights file (.safetensors/.bin/"
                                ".pth), loaded strictly; foundation models' files go here")
    encoder_kwargs: dict[str, EncoderKwarg] = Field(
        default_factory=dict, description="passed to timm.create_model over the recipe's "
        "(e.g. init_values: 1e-5 for LayerScale weights)")
    input_size: int | None = Field(None, ge=16, le=4096, description="patches are resized to "
                                   "this side on the device before the encoder (a 224-px ViT); "
                                   "default: the recipe's, else the patch as it is")
    mean: tuple[float, float, float] | None = Field(None, description="input normalisation; "
                                                    "default: the recipe's, the packaged "
                                                    "weights', timm's pretrained_cfg, ImageNet")
    std: tuple[float, float, float] | None = None
    # The config section that holds this spec: errors name ``<section>.encoder_kwargs``.
    section: ClassVar[str] = ""

    @field_validator("encoder_kwargs")
    @classmethod
    def _check_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        check_kwarg_values(kwargs)
        return kwargs

    @model_validator(mode="after")
    def _check_spec(self) -> EncoderSpec:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError("std must be positive")
        return self


class Stage2Config(EncoderSpec):
    section: ClassVar[str] = "stage2"

    encoder: str = "dla34"
    top_k: int = Field(16, ge=1, le=MAX_TOP_K)
    epochs: int = Field(15, ge=0)
    slides_per_batch: int = Field(4, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, description="default: one pass over slides")
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    augment: bool = True
    init: Literal["encoder", "theta1_encoder", "theta1"] = Field(
        "encoder", description="θ2's starting point: its own encoder's weights (encoder), its "
        "round's θ1 encoder (theta1_encoder), or its round's whole θ1 with a max over the map as "
        "the patch logit, so that θ2 starts as θ1's patch score (theta1)")
    select_by: Literal["train_curve", "train_loss", "val"] = Field(
        "train_curve", description="round choice: mean θ2 training loss over epochs "
        "(train_curve), final training loss (train_loss, the paper's), or val loss")
    select_tolerance: float = Field(1e-3, ge=0, description="criterion values this close to "
                                    "the best are a reported tie")
    tie_break: Literal["val_loss", "latest", "earliest"] = Field(
        "val_loss", description="how a tie is broken: the lower val loss (else the latest), "
        "the latest round, or the earliest (an argmin's first, the paper's)")
    include_round0: bool = Field(False, description="round selection also considers round 0 "
                                 "(θ1 on the pixel labels alone); the paper selects among 1..N")
    freeze_stages: int | None = Field(None, ge=0, le=8, description="with init=theta1: θ2's "
                                      "frozen encoder stages (default: model.freeze_stages)")

    @model_validator(mode="after")
    def _selectable(self) -> Stage2Config:
        if self.epochs == 0 and self.select_by == "train_curve":
            raise ValueError("stage2.epochs=0 leaves no training curve to pick a round by: "
                             "set stage2.select_by=train_loss or val")
        if self.freeze_stages is not None and self.init != "theta1":
            raise ValueError("stage2.freeze_stages applies to θ2 started as θ1: set "
                             "stage2.init=theta1 or leave it unset")
        return self


class MILConfig(EncoderSpec):
    """The image-level baseline (Campanella et al. 2019): top-k MIL with slide labels only."""

    section: ClassVar[str] = "mil"

    top_k: int = Field(1, ge=1, description="patches per slide trained on each epoch")
    epochs: int = Field(20, ge=0)
    steps_per_epoch: int | None = Field(None, ge=1, description="default: one pass over the "
                                        "epoch's selection")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    aggregation: Literal["max", "mean_topk"] = "max"
    augment: bool = True
    batchnorm: Literal["train", "frozen"] = Field(
        "train", description="frozen: BatchNorm keeps the pretrained statistics while training "
        "on top-k batches (eval mode; affine weights still train)")


class ABMILConfig(EncoderSpec):
    """Gated-attention MIL (Ilse et al. 2018) on cached patch features of a frozen encoder,
    with CLAM's instance clustering loss as an option (Lu et al. 2021)."""

    section: ClassVar[str] = "abmil"

    features: str | None = Field(None, description="folder of cached features (`mixsup "
                                 "features`); default: the run's own features/ folder")
    features_format: Literal["mixsup", "trident"] = Field(
        "mixsup", description="trident: `features` is a folder of TRIDENT's (or CLAM's) patch "
        "features, <slide_id>.h5 each; the encoder settings are then unused")
    embed_dim: int = Field(256, ge=1, description="features -> this, before the attention")
    attention_dim: int = Field(128, ge=1)
    dropout: float = Field(0.25, ge=0, lt=1)
    epochs: int = Field(20, ge=1)
    select_epoch: Literal["val", "last"] = Field(
        "val", description="the head kept: the epoch of lowest val loss (CLAM's early "
        "stopping; the last epoch where no val slide is labelled), or the last")
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    top_k: int = Field(16, ge=1, description="patches listed per slide, by attention")
    instance_loss: bool = Field(False, description="CLAM's instance clustering loss: the top "
                                "and bottom instance_k patches by attention as in- and "
                                "out-of-class evidence")
    instance_k: int = Field(8, ge=1)
    instance_weight: float = Field(0.3, ge=0, le=1, description="share of the instance loss in "
                                   "the total (CLAM: 0.3)")

    @model_validator(mode="after")
    def _foreign_features_named(self) -> ABMILConfig:
        if self.features_format == "trident" and not self.features:
            raise ValueError("abmil.features_format=trident needs abmil.features: the folder "
                             "of TRIDENT's <slide_id>.h5 feature files")
        return self


class DataSubsetConfig(_Frozen):
    """Ablations (the paper's Table V): fewer pixel labels or fewer labelled slides."""

    max_fine_patches: Count | None = Field(None, ge=1)
    pixel_slides: Count | None = Field(None, ge=1, description="keep the pixel labels of this "
                                     "many annotated train slides (the rest keep slide labels)")
    slide_label_fraction: float = Field(1.0, gt=0, le=1)


class Config(_Frozen):
    preset: Literal["paper", "small", "tiny", "custom"] = "custom"
    protocol: Literal["mixsup", "paper"] = Field(
        "mixsup", description="paper: turn off every departure from the paper's method "
        "(mixsup.config.protocols lists them)")
    seed: int = 0
    reader: ReaderConfig = ReaderConfig()
    tissue: TissueConfig = TissueConfig()
    tiling: TilingConfig = TilingConfig()
    stain: StainConfig = StainConfig()
    annotations: AnnotationConfig = AnnotationConfig()
    model: ModelConfig = ModelConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    training: TrainingConfig = TrainingConfig()
    stage1: Stage1Config = Stage1Config()
    stage2: Stage2Config = Stage2Config()
    mil: MILConfig = MILConfig()
    abmil: ABMILConfig = ABMILConfig()
    subset: DataSubsetConfig = DataSubsetConfig()

    @model_validator(mode="after")
    def _theta1_init_matches(self) -> Config:
        if self.stage2.init == "theta1_encoder" and self.stage2.encoder != self.model.encoder:
            raise ValueError(f"stage2.init=theta1_encoder needs stage2.encoder "
                             f"({self.stage2.encoder}) to equal model.encoder "
                             f"({self.model.encoder})")
        unused = [k for k in ("weights", "encoder_kwargs", "input_size", "mean")
                  if getattr(self.stage2, k)]
        if self.stage2.init == "theta1" and unused:
            raise ValueError(f"stage2.{unused[0]} is unused with stage2.init=theta1 (θ2 starts "
                             "as θ1); set stage2.init=encoder to use it")
        return self


def preset_dict(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}", f"use one of {', '.join(PRESETS)}")
    text = resources.files("mixsup.config.presets").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def load_config(preset: str = "paper", files: list[str | Path] | tuple = (),
                overrides: list[str] | tuple = ()) -> Config:
    """Preset, then each YAML file in order, then ``key.sub=value`` overrides."""
    data: dict[str, Any] = preset_dict(preset)
    data["preset"] = preset
    return apply_overrides(data, files, overrides)


def apply_overrides(data: dict[str, Any], files: list[str | Path] | tuple = (),
                    overrides: list[str] | tuple = ()) -> Config:
    """``data`` (a config as a dict), then each YAML file, then ``key.sub=value`` overrides."""
    data = copy.deepcopy(data)
    for f in files:
        path = Path(f)
        loaded = parse_yaml(read_text(path, "config file", error=ConfigError), path,
                            "config file", ConfigError) or {}
        if not isinstance(loaded, dict):
            raise ConfigError("config must be a YAML mapping", "write key: value pairs", path)
        _merge(data, loaded)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad override {item!r}", "write --set section.key=value")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"bad override {item!r}: {part} is not a section",
                                  "check the key path")
        node[parts[-1]] = parse_yaml(raw, None, f"value of --set {key.strip()}", ConfigError)
    return validate(data)


def validate(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(apply_protocol(copy.deepcopy(data)))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}",
                          "remove unknown keys and keep values in range "
                          "(see `mixsup config --preset paper` for every key)") from None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
