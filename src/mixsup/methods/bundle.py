"""The exported model: θ1 + θ2 of the selected round, with everything needed to use them.

    bundle/bundle.json   version, config, preprocessing, selected round, threshold, losses
                         (the record ``methods.bundle_meta.BundleMeta``)
    bundle/theta1.pt     segmenter weights
    bundle/theta2.pt     classifier weights
"""

from __future__ import annotations

import filecmp
import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from mixsup import __version__
from mixsup.config import MPP_RANGE, Config, EncoderSpec, validate
from mixsup.config.run import RUN_FIX
from mixsup.errors import MixsupError
from mixsup.methods.bundle_meta import (
    BUNDLE_FIX,
    BUNDLE_FORMAT,
    BundleMeta,
    InputNorm,
    ModelFile,
    Preprocessing,
    read_bundle_meta,
)
from mixsup.methods.registry import Mode, get_mode
from mixsup.models.encoders import input_norm, timm_build
from mixsup.models.factory import build_theta2, theta2_input
from mixsup.slides.stain_normalise import StainReference
from mixsup.storage.artefacts import load_checkpoint, load_checkpoint_into
from mixsup.storage.atomic import as_written, write_json
from mixsup.storage.user_files import finite, own_file


@dataclass(frozen=True)
class BundleFile:
    """A bundle folder and its ``bundle.json``, read and checked once."""

    dir: Path
    meta: BundleMeta  # bundle.json as written by ``export_bundle``
    cfg: Config
    stain: StainReference | None = None  # the patches' reference stain (stain.normalise)

    @property
    def mode(self) -> Mode:
        return get_mode(self.meta.mode)

    @property
    def threshold(self) -> float:
        return self.meta.operating_threshold


@dataclass(frozen=True)
class Bundle:
    file: BundleFile
    theta1: torch.nn.Module
    theta2: torch.nn.Module | None  # None for the image-level (MIL) baseline


def export_bundle(out_dir: Path, cfg: Config, mode: Mode, theta1_ckpt: Path,
                  theta2_ckpt: Path | None, info: dict[str, Any],
                  stain: StainReference | None = None) -> Path:
    """``theta1`` is the segmenter (or, for the image mode, the MIL patch classifier);
    ``stain`` the run's reference stain where ``stain.normalise`` is on. A bundle already
    there with the same weights and contents (a resumed run) is left as it is."""
    preprocessing = Preprocessing(
        mpp=cfg.tiling.mpp, patch_size=cfg.tiling.patch_size, overlap=cfg.tiling.overlap,
        normalisation=_normalisation(cfg, mode), map_downsample=mode.map_downsample(cfg),
        top_k=mode.top_k(cfg), tissue=cfg.tissue,
        stain=None if stain is None else stain.record())
    theta1 = ModelFile(encoder=mode.theta1_input(cfg)[0], file="theta1.pt")
    theta2 = None if theta2_ckpt is None else ModelFile(
        encoder=theta2_input(cfg.model, cfg.stage2)[0], init=cfg.stage2.init, file="theta2.pt")
    meta = {
        "format": BUNDLE_FORMAT,
        "mixsup_version": __version__,
        "mode": mode.name,
        "preprocessing": preprocessing.model_dump(mode="json"),
        "theta1": theta1.model_dump(mode="json", exclude_none=True),
        "theta2": None if theta2 is None else theta2.model_dump(mode="json"),
        **info,
        "config": cfg.model_dump(mode="json"),
    }
    ckpts = {"theta1": theta1_ckpt, "theta2": theta2_ckpt}
    for src in ckpts.values():
        if src is not None:  # a resumed run's may be missing or damaged
            with own_file(src, "checkpoint", RUN_FIX):
                load_checkpoint(src)
    if _same_bundle(out_dir, meta, ckpts):
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bundle.json").unlink(missing_ok=True)
    for name, src in ckpts.items():
        if src is not None:
            shutil.copyfile(src, out_dir / f".{name}.pt.tmp")
            (out_dir / f".{name}.pt.tmp").replace(out_dir / f"{name}.pt")
    meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json(out_dir / "bundle.json", meta)  # written last: a bundle with it is complete
    return out_dir


def _same_bundle(out_dir: Path, meta: dict[str, Any], ckpts: dict[str, Path | None]) -> bool:
    path = out_dir / "bundle.json"
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(old, dict):
        return False
    old.pop("created", None)
    filecmp.clear_cache()
    # compared as text: NaN (a loss without steps) is not equal to itself as a float
    same = json.dumps(old, sort_keys=True) == json.dumps(as_written(meta), sort_keys=True)
    return same and all(
        src is None or ((out_dir / f"{name}.pt").is_file()
                        and filecmp.cmp(src, out_dir / f"{name}.pt", shallow=False))
        for name, src in ckpts.items())


def _normalisation(cfg: Config, mode: Mode) -> dict[str, InputNorm]:
    """Each model's input: RGB / 255, then (x - mean) / std (done inside the model)."""
    def norm(encoder: str, pretrained: bool, spec: EncoderSpec | None) -> InputNorm:
        mean, std = input_norm(encoder, pretrained, spec)
        size = timm_build(encoder, spec).input_size if spec else None
        return InputNorm(scale=1 / 255, mean=mean, std=std, resize_to=size)

    out = {"theta1": norm(*mode.theta1_input(cfg), mode.encoder_spec(cfg))}
    if mode.theta2:
        out["theta2"] = norm(*theta2_input(cfg.model, cfg.stage2),
                             None if cfg.stage2.init == "theta1" else cfg.stage2)
    return out


def read_bundle(path: str | Path) -> BundleFile:
    """The bundle of a run folder (or the bundle folder itself): its ``bundle.json`` read
    and checked once, without loading the weights.

    Args:
        path: A finished run folder (with ``bundle/``) or its bundle folder.

    Returns:
        The bundle folder, its typed record (``meta``: mode, preprocessing, threshold...) and
        its validated config.

    Example:
        >>> from mixsup.methods.bundle import read_bundle
        >>> bundle = read_bundle("runs/r1")  # doctest: +SKIP
        >>> bundle.mode.name, bundle.threshold  # doctest: +SKIP
        ('mixed', 0.42)
        >>> bundle.meta.preprocessing.patch_size  # doctest: +SKIP
        512
    """
    path = Path(path)
    if (path / "bundle").is_dir():
        path = path / "bundle"
    meta_path = path / "bundle.json"
    if not meta_path.is_file():
        raise MixsupError("no model bundle here",
                          "pass a finished run folder (with bundle/) or its bundle folder", path)
    meta = read_bundle_meta(meta_path)
    with own_file(meta_path, "bundle.json", BUNDLE_FIX):
        cfg = validate(meta.config)
        bundle = BundleFile(path, meta, cfg, _stain(meta, cfg, meta_path))
        # the MPP a slide's metadata must have; the tiling's is checked by the config
        finite(meta.preprocessing.mpp, "preprocessing.mpp", meta_path, low=MPP_RANGE[0],
               high=MPP_RANGE[1])
    if bundle.mode.theta2 != (meta.theta2 is not None):
        raise MixsupError(f"a {bundle.mode.name}-mode bundle "
                          + ("without θ2" if bundle.mode.theta2 else "with a θ2"),
                          "re-export the bundle from its run folder", meta_path)
    return bundle


def _stain(meta: BundleMeta, cfg: Config, path: Path) -> StainReference | None:
    rec, method = meta.preprocessing.stain, cfg.stain.normalise
    if rec is None and method == "none":
        return None
    if rec is None:
        raise MixsupError(f"the bundle's config normalises stains ({method}) but "
                          "preprocessing.stain is missing", BUNDLE_FIX, path)
    stain = StainReference.from_record(rec, path)
    if stain.method != method:
        raise MixsupError(f"preprocessing.stain is a {stain.method} reference, the bundle's "
                          f"config says stain.normalise={method}", BUNDLE_FIX, path)
    return stain


def load_bundle(bundle: BundleFile | str | Path, device: torch.device | str = "cpu") -> Bundle:
    """The bundle's models, weights loaded strictly, in eval mode.

    Args:
        bundle: A ``read_bundle`` result, a run folder or its bundle folder.
        device: Where the weights are loaded to.

    Returns:
        The bundle file and its models: θ1 (the segmenter, or a MIL mode's patch model) and
        θ2 (None for a mode without one).

    Example:
        >>> from mixsup.methods.bundle import load_bundle
        >>> models = load_bundle("runs/r1")  # doctest: +SKIP
        >>> models.theta2 is not None  # doctest: +SKIP
        True
    """
    bf = bundle if isinstance(bundle, BundleFile) else read_bundle(bundle)
    theta1 = bf.mode.bundled_theta1(bf)
    _fill(theta1, bf.dir / "theta1.pt", device)
    theta2 = None
    if bf.meta.theta2 is not None:
        theta2 = build_theta2(bf.cfg.model, bf.cfg.stage2, load_weights=False)
        _fill(theta2, bf.dir / "theta2.pt", device)
        theta2.eval()
    return Bundle(bf, theta1.eval(), theta2)


def _fill(module: torch.nn.Module, path: Path, device: torch.device | str) -> None:
    """The checkpoint's weights into ``module``: named finite tensors of the model's names
    and shapes (no negative variance), else one error naming the file and the first tensor
    at fault."""
    load_checkpoint_into(module, path, BUNDLE_FIX, device)
    bad = [k for k, v in module.state_dict().items() if v.is_floating_point() and (
        not bool(torch.isfinite(v).all()) or (k.endswith("running_var") and bool((v < 0).any())))]
    if bad:
        raise MixsupError(f"{len(bad)} tensor(s) hold NaN, infinite or negative-variance values "
                          f"(first: {bad[0]})", BUNDLE_FIX, path)
