"""The attention baseline: gated-attention MIL (Ilse et al., CLAM) on a frozen encoder's
cached features, slide labels only; its slide score is the head's, its map the attention."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixsup.config import Config
from mixsup.methods.bundle_meta import BUNDLE_FIX
from mixsup.methods.mode import Mode
from mixsup.storage.user_files import finite, own_file

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ABMILMode(Mode):
    em_rounds: bool = False
    theta2: bool = False
    section: str = "abmil"
    ranks_by_probability: bool = False
    cached_features: bool = True

    def train(self, ctx: Any, val: Any) -> Any:
        from mixsup.train.abmil import train_abmil

        return train_abmil(ctx, self, val)

    def build_theta1(self, cfg: Config, load_weights: bool = True) -> nn.Module:
        from mixsup.models.abmil import build_bundled

        return build_bundled(cfg, load_weights)

    def bundled_theta1(self, bundle: Any) -> nn.Module:
        """On features made elsewhere (TRIDENT's), the head's width is the one ``bundle.json``
        records of them (``features_fingerprint.dim``)."""
        from mixsup.models.abmil import build_bundled

        if bundle.cfg.abmil.features_format == "mixsup":
            return super().bundled_theta1(bundle)
        path = bundle.dir / "bundle.json"
        with own_file(path, "bundle.json", BUNDLE_FIX):
            fp = bundle.meta.features_fingerprint or {}
            dim = finite(fp.get("dim"), "features_fingerprint.dim", low=1, high=1 << 20)
        return build_bundled(bundle.cfg, False, int(dim))

    def scorer(self, models: Any, cfg: Config, out: Path, settings: Any) -> Any:
        from mixsup.inference.attention import attention_scorer

        return attention_scorer(models, cfg, out, settings)
