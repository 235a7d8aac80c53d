"""The abmil mode's scorer: a slide's patch features (read from the training's feature folder
where it has them, else computed into the prediction's ``features/``), the attention head,
and the attention map (each patch's weight over the slide's highest) as the slide's
heatmap."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from mixsup.config import Config
from mixsup.inference.cpu_backend import inference_model
from mixsup.inference.features import (
    FeatureSink,
    SlideFeatures,
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
from mixsup.models.abmil import FeatureAttentionNet
from mixsup.models.factory import embedding_dim
from mixsup.slides.patches import SlideSource
from mixsup.slides.tiling import TileSet

if TYPE_CHECKING:
    from mixsup.methods.bundle import Bundle

CHUNK = 4096  # patches per pass of the head


class AttentionScorer:
    region = "High attention (>= half the slide's highest)"

    def __init__(self, models: Bundle, cfg: Config, out: Path, settings: InferSettings) -> None:
        net = cast(FeatureAttentionNet, models.theta1).to(settings.device).eval()
        self.head, self.dim = net.head, embedding_dim(net.encoder)
        self.out, self.k = out, cfg.abmil.top_k
        # exported (or compiled) once here, not once per slide
        self.net = inference_model(net.encoder, settings, cfg.tiling.patch_size)
        self.settings = replace(settings, compile=False)
        self.fingerprint: dict[str, Any] | None = models.file.meta.features_fingerprint
        self.cache = self._training_cache(models.file.meta.features)

    def _training_cache(self, folder: str | None) -> Path | None:
        """The training run's feature folder, where it still holds these features."""
        if folder is None or self.fingerprint is None:
            return None
        return Path(folder) if holds(Path(folder), self.fingerprint) else None

    def features(self, slide_id: str, source: SlideSource, tiles: TileSet) -> SlideFeatures:
        """The training's cached features (only read), else the prediction's own
        ``features/`` (kept, so that a resumed prediction reads them back), else computed."""
        own = self.out / "features"
        for folder in (self.cache, own):
            got = None if folder is None else open_features(store_path(folder, slide_id),
                                                            tiles.key)
            if got is not None:
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

    def __call__(self, slide_id: str, source: SlideSource,
                 tiles: TileSet) -> tuple[StoredMaps, SlideScore]:
        feats = self.features(slide_id, source, tiles).features
        a, s = self._patch_logits(feats)
        if len(a):
            weights = torch.softmax(torch.from_numpy(a), 0).numpy()
            prob = float(torch.sigmoid(torch.tensor(float((weights * s).sum()))))
            rel = (weights / weights.max()).astype(np.float32)
        else:
            prob, rel = 0.0, np.zeros(0, np.float32)
        maps = write_maps(self.out / "maps" / f"{slide_id}.zarr", tiles.coords,
                          PatchMaps(rel.astype(np.float16)[:, None, None], rel),
                          {"key": tiles.key, "slide_id": slide_id, "size0": tiles.size0,
                           "values": "attention / the slide's highest"})
        inst = 1 / (1 + np.exp(-s))
        topk = tuple(TopKPatch(r + 1, int(tiles.coords[j][0]), int(tiles.coords[j][1]),
                               float(tiles.size0), float(rel[j]), float(inst[j]))
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
