"""The abmil mode's scorer: a slide's patch features (read from the training's feature folder
where it has them, else computed into the prediction's ``features/``; for a bundle trained on
TRIDENT's features, always read from a folder of them), the attention head, and the attention
map (each patch's weight over the slide's highest) as the slide's heatmap."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from mixsup.config import Config
from mixsup.errors import MixsupError
from mixsup.inference.cpu_backend import inference_model
from mixsup.inference.features import (
    FeatureSink,
    SlideFeatures,
    check_widths,
    claim_folder,
    embed_slides,
    fingerprint_id,
    holds,
    open_features,
    store_path,
)
from mixsup.inference.map_store import StoredMaps, write_maps
from mixsup.inference.patch_maps import PatchMaps
from mixsup.inference.settings import InferSettings
from mixsup.inference.slide import SlideScore, TopKPatch
from mixsup.inference.topk import top_k
from mixsup.inference.trident_features import TridentFeatures, open_trident
from mixsup.models.abmil import FeatureAttentionNet
from mixsup.models.factory import embedding_dim
from mixsup.slides.patches import SlideSource
from mixsup.slides.tiling import TileSet

if TYPE_CHECKING:
    from mixsup.methods.bundle import Bundle

CHUNK = 4096  # patches per pass of the head


def attention_scorer(models: Bundle, cfg: Config, out: Path,
                     settings: InferSettings) -> AttentionScorer:
    """The abmil mode's scorer: on mixsup's features, or on TRIDENT's for a bundle trained on
    them (``abmil.features_format``)."""
    if models.file.cfg.abmil.features_format == "trident":
        return TridentScorer(models, cfg, out, settings)
    return AttentionScorer(models, cfg, out, settings)


def feature_folder(models: Bundle, cfg: Config) -> Path | None:
    """Where prediction reads features: the folder given at predict time (``abmil.features``
    other than the bundle's, e.g. ``predict --features``), else the training's."""
    given, trained = cfg.abmil.features, models.file.cfg.abmil.features
    folder = given if given != trained else models.file.meta.features
    return None if folder is None else Path(folder)


class AttentionScorer:
    region = "High attention (>= half the slide's highest)"

    def __init__(self, models: Bundle, cfg: Config, out: Path, settings: InferSettings) -> None:
        net = self._head(models, cfg, out, settings)
        self.cache = self._cache(models, cfg)
        # exported (or compiled) once here, not once per slide
        self.net = inference_model(net.encoder, settings, cfg.tiling.patch_size)

    def _head(self, models: Bundle, cfg: Config, out: Path,
              settings: InferSettings) -> FeatureAttentionNet:
        net = cast(FeatureAttentionNet, models.theta1).to(settings.device).eval()
        self.head, self.dim = net.head, embedding_dim(net.encoder)
        self.out, self.k = out, cfg.abmil.top_k
        self.settings = replace(settings, compile=False)
        self.fingerprint: dict[str, Any] | None = models.file.meta.features_fingerprint
        return net

    def _cache(self, models: Bundle, cfg: Config) -> Path | None:
        """The feature folder to read (``feature_folder``) where it holds these features; a
        folder given at predict time must."""
        folder = feature_folder(models, cfg)
        if folder is None or self.fingerprint is None:
            return None
        if holds(folder, self.fingerprint):
            return folder
        if cfg.abmil.features != models.file.cfg.abmil.features:
            raise MixsupError("this folder does not hold the features of the bundle's encoder "
                              "and tiling", "pass a `mixsup features` folder made with the "
                              "bundle's settings, or leave --features out: prediction then "
                              "computes the features", folder)
        return None

    def features(self, slide_id: str, source: SlideSource, tiles: TileSet) -> SlideFeatures:
        """The cached features (only read), else the prediction's own ``features/`` (kept, so
        that a resumed prediction reads them back), else computed."""
        own = self.out / "features"
        for folder in (self.cache, own):
            got = None if folder is None else open_features(store_path(folder, slide_id),
                                                            tiles.key, tiles.coords)
            if got is not None:
                check_widths([got], self.dim)
                return got
        if self.fingerprint is not None:
            claim_folder(own, self.fingerprint)
        attrs = {"key": tiles.key, "slide_id": slide_id,
                 "fingerprint": fingerprint_id(self.fingerprint or {}),
                 "dim": self.dim}
        done = list(embed_slides(self.net, [source], [(0, tiles.coords)], tiles.patch_size,
                                 tiles.mpp, self.settings,
                                 lambda _i, _n, _m: FeatureSink(store_path(own, slide_id),
                                                                tiles.coords, attrs)))
        return cast(SlideFeatures, done[0][1])

    def grid(self, got: SlideFeatures, tiles: TileSet) -> tuple[np.ndarray, float]:
        """The level-0 corners and side of the patches that ``got`` holds."""
        return tiles.coords, tiles.size0

    def __call__(self, slide_id: str, source: SlideSource,
                 tiles: TileSet) -> tuple[StoredMaps, SlideScore]:
        got = self.features(slide_id, source, tiles)
        coords, size0 = self.grid(got, tiles)
        a, s = self._patch_logits(got.features)
        if len(a):
            weights = torch.softmax(torch.from_numpy(a), 0).numpy()
            prob = float(torch.sigmoid(torch.tensor(float((weights * s).sum()))))
            rel = (weights / weights.max()).astype(np.float32)
        else:
            prob, rel = 0.0, np.zeros(0, np.float32)
        maps = write_maps(self.out / "maps" / f"{slide_id}.zarr", coords,
                          PatchMaps(rel.astype(np.float16)[:, None, None], rel),
                          {"key": tiles.key, "slide_id": slide_id, "size0": size0,
                           "values": "attention / the slide's highest"})
        inst = 1 / (1 + np.exp(-s))
        topk = tuple(TopKPatch(r + 1, int(coords[j][0]), int(coords[j][1]),
                               float(size0), float(rel[j]), float(inst[j]))
                     for r, j in enumerate(top_k(rel, self.k)))
        return maps, SlideScore(prob, topk)

    def _patch_logits(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(attention logits, instance logits) of every patch, float64."""
        a, s = [], []
        with torch.inference_mode():
            for lo in range(0, len(feats), CHUNK):
                x = torch.from_numpy(np.asarray(feats[lo:lo + CHUNK], np.float32))
                att, ins, _ = self.head.patch_logits(x.to(self.settings.device))
                a.append(att.double().cpu().numpy())
                s.append(ins.double().cpu().numpy())
        return (np.concatenate(a), np.concatenate(s)) if a else (np.zeros(0), np.zeros(0))


class TridentScorer(AttentionScorer):
    """A bundle trained on TRIDENT's features has no encoder to compute them: each slide's
    ``<slide_id>.h5`` is read from the feature folder (``predict --features``, else the
    training's), and the map drawn on its patches."""

    def __init__(self, models: Bundle, cfg: Config, out: Path, settings: InferSettings) -> None:
        self._head(models, cfg, out, settings)
        folder = feature_folder(models, cfg)
        if folder is None or not folder.is_dir():
            raise MixsupError("this bundle was trained on TRIDENT's features and its feature "
                              "folder is not there", "pass the slides' TRIDENT features: "
                              "`mixsup predict --features FOLDER` (TRIDENT's features_<encoder>"
                              "/ folder, one <slide_id>.h5 per slide)", folder or models.file.dir)
        self.folder = folder

    def features(self, slide_id: str, source: SlideSource, tiles: TileSet) -> SlideFeatures:
        got = open_trident(self.folder / f"{slide_id}.h5")
        trained = (self.fingerprint or {}).get("encoder")
        if got.encoder is not None and trained is not None and got.encoder != trained:
            raise MixsupError(f"features of encoder {got.encoder!r}; the bundle was trained on "
                              f"{trained!r}'s", "pass the TRIDENT features of the bundle's "
                              "encoder", got.path)
        check_widths([got], self.dim, fix="pass the TRIDENT features of the bundle's encoder")
        return got

    def grid(self, got: SlideFeatures, tiles: TileSet) -> tuple[np.ndarray, float]:
        """The file's own patches: its coords, inside the slide, and their level-0 side."""
        rec = cast(TridentFeatures, got)
        if rec.size0 is None and rec.n:
            raise MixsupError("the coords' attributes give no patch size in level-0 pixels "
                              "(patch_size_level0, or patch_size with level0_magnification and "
                              "target_magnification)", "rerun TRIDENT's patching and feature "
                              "extraction for this slide", rec.path)
        coords = rec.coords
        if len(coords) and (coords >= np.asarray(tiles.dimensions)).any():
            raise MixsupError(f"coords outside this {tiles.dimensions[0]} x "
                              f"{tiles.dimensions[1]} slide: the features of another slide?",
                              "pass the TRIDENT features of this very slide (files are "
                              "matched by slide_id)", rec.path)
        return coords, rec.size0 or 1.0
