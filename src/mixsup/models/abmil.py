"""Gated-attention MIL (Ilse et al. 2018) over a slide's patch features, and the frozen encoder
plus attention head that a bundle ships for prediction.

The classifier is linear, so the slide logit c·(Σ a_i h_i) + b equals Σ a_i (c·h_i + b): each
patch's instance logit weighted by its attention. Scoring a slide therefore needs two numbers
per patch, never the whole bag at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mixsup.config import ABMILConfig, Config
from mixsup.errors import MixsupError


class GatedAttentionMIL(nn.Module):
    """features (N, D) -> slide logit, with each patch's attention and instance logits."""

    def __init__(self, in_dim: int, cfg: ABMILConfig) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, cfg.embed_dim), nn.ReLU(),
                                   nn.Dropout(cfg.dropout))
        self.attention_v = nn.Linear(cfg.embed_dim, cfg.attention_dim)
        self.attention_u = nn.Linear(cfg.embed_dim, cfg.attention_dim)
        self.attention_w = nn.Linear(cfg.attention_dim, 1)
        self.classifier = nn.Linear(cfg.embed_dim, 1)
        # CLAM's instance classifiers, one per class; trained only with instance_loss
        self.instance = nn.ModuleList([nn.Linear(cfg.embed_dim, 2) for _ in range(2)])

    def patch_logits(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor]:
        """(attention logits (N,), instance logits (N,), embeddings (N, E))."""
        h = self.embed(feats)
        gate = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        return self.attention_w(gate)[:, 0], self.classifier(h)[:, 0], h

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(slide logit (), attention weights (N,) summing to 1, embeddings (N, E))."""
        a, s, h = self.patch_logits(feats)
        weights = torch.softmax(a, dim=0)
        return (weights * s).sum(), weights, h

    def instance_loss(self, h: torch.Tensor, weights: torch.Tensor, label: int,
                      k: int) -> torch.Tensor:
        """CLAM (single branch, not subtyping): the true class's instance classifier learns
        the k most attended patches as the class's evidence and the k least as not."""
        k = min(k, len(h) // 2)
        if k < 1:
            return h.sum() * 0.0
        top = torch.topk(weights, k).indices
        bottom = torch.topk(-weights, k).indices
        logits = self.instance[label](torch.cat([h[top], h[bottom]]))
        target = torch.cat([torch.ones(k), torch.zeros(k)]).long().to(h.device)
        return F.cross_entropy(logits, target)


def slide_logit(attention_logits: torch.Tensor, instance_logits: torch.Tensor) -> torch.Tensor:
    """Σ softmax(a)_i s_i: the slide logit from the per-patch outputs (see the module note)."""
    return (torch.softmax(attention_logits, dim=0) * instance_logits).sum()


class FeatureAttentionNet(nn.Module):
    """The bundled model: the frozen patch encoder and the trained attention head. A batch of
    patches gives (B, 2) rows of (instance logit, attention logit)."""

    def __init__(self, encoder: nn.Module, head: GatedAttentionMIL) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, s, _ = self.head.patch_logits(self.encoder(x).float())
        return torch.stack([s, a], dim=1)


class ForeignEncoder(nn.Module):
    """Stands for the encoder of features made elsewhere (TRIDENT's): the bundle has no
    weights of it, so it cannot embed a patch; the features are read instead."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim  # ``factory.embedding_dim``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise MixsupError("this model was trained on TRIDENT's features and has no encoder "
                          "to compute them", "pass the slides' TRIDENT features to `mixsup "
                          "predict --features FOLDER`")


def build_bundled(cfg: Config, load_weights: bool = True,
                  in_dim: int | None = None) -> FeatureAttentionNet:
    """The abmil mode's bundled network (``methods.registry``): ``cfg.abmil``'s encoder (its
    weights where ``load_weights``) and a fresh head for a checkpoint to fill; for features
    made elsewhere (``abmil.features_format=trident``) a ``ForeignEncoder`` and a head of
    their width ``in_dim``."""
    from mixsup.models.factory import build_embedder, embedding_dim

    if cfg.abmil.features_format != "mixsup":
        if in_dim is None:
            raise ValueError("a head on foreign features needs their width")
        return FeatureAttentionNet(ForeignEncoder(in_dim), GatedAttentionMIL(in_dim, cfg.abmil))
    encoder = build_embedder(cfg.abmil, load_weights)
    return FeatureAttentionNet(encoder, GatedAttentionMIL(embedding_dim(encoder), cfg.abmil))
