"""Stain normalisation (``stain.normalise``): each patch is mapped onto a reference stain as it
is read, identically at training and prediction time.

The estimation and the mapping are torchstain's numpy normalisers (Macenko et al. 2009;
Reinhard et al. 2001); what is fitted on the reference tissue is a handful of numbers
(Macenko: the H&E optical-density matrix and the 99th-percentile concentrations; Reinhard:
the LAB means and standard deviations), stored as JSON in the run folder and the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from mixsup.errors import MixsupError

StainMethod = Literal["macenko", "reinhard"]
METHODS: tuple[StainMethod, ...] = ("macenko", "reinhard")
_IO = 240  # transmitted light intensity (torchstain's default)
_BETA = 0.15  # optical density below which a pixel is background (torchstain's default)
# Below this share of stained pixels the per-patch estimate is noise: the patch is left as it
# is (background, or a sliver of tissue at the slide's edge).
MIN_TISSUE_SHARE = 0.05
_SIZES = {"macenko": 8, "reinhard": 6}  # HE (3x2) + maxC (2); LAB means (3) + stds (3)
MAX_VALUE = 1e6  # far past any optical density or LAB statistic; compared, never made a float
MIN_SPREAD = 1.0  # RGB standard deviation below which a patch is flat (Reinhard divides by it)
MAX_FIT_PIXELS = 2_000_000  # the reference is fitted on at most this many tissue pixels


@dataclass(frozen=True)
class StainReference:
    """A fitted reference stain: ``apply`` maps an RGB uint8 patch (H, W, 3) onto it."""

    method: StainMethod
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"stain method {self.method!r} is not one of {', '.join(METHODS)}")
        if len(self.values) != _SIZES[self.method] or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool)
                and -MAX_VALUE < v < MAX_VALUE for v in self.values):
            raise ValueError(f"a {self.method} stain reference is {_SIZES[self.method]} finite "
                             f"numbers (got {list(self.values)!r})")

    @cached_property
    def normaliser(self) -> Any:
        from torchstain.numpy.normalizers import (  # only when normalising
            NumpyMacenkoNormalizer,
            NumpyReinhardNormalizer,
        )

        v = np.asarray(self.values, dtype=np.float64)
        norm: Any
        if self.method == "macenko":
            norm = NumpyMacenkoNormalizer()
            norm.HERef, norm.maxCRef = v[:6].reshape(3, 2), v[6:]
        else:
            norm = NumpyReinhardNormalizer()
            norm.target_means, norm.target_stds = v[:3], v[3:]
        return norm

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` on the reference stain; unchanged where too little of it is tissue for an
        estimate, or where the estimate is degenerate (one stain only, a flat patch)."""
        if stained_share(rgb) < MIN_TISSUE_SHARE or flat(rgb):
            return rgb
        try:
            with np.errstate(all="ignore"):
                if self.method == "macenko":
                    out, _, _ = self.normaliser.normalize(rgb, Io=_IO, beta=_BETA, stains=False)
                else:
                    out = self.normaliser.normalize(rgb)
        except (np.linalg.LinAlgError, ValueError, IndexError):
            return rgb
        out = np.asarray(out)
        if out.shape != rgb.shape:
            return rgb
        return np.ascontiguousarray(out, dtype=np.uint8)

    def record(self) -> dict[str, Any]:
        return {"method": self.method, "values": list(self.values)}

    @classmethod
    def from_record(cls, rec: Any, path: Any = None) -> StainReference:
        """A reference from its JSON record; one ``MixsupError`` naming ``path`` if damaged."""
        try:
            if not isinstance(rec, dict) or set(rec) != {"method", "values"}:
                raise ValueError("expected {\"method\": ..., \"values\": [...]}")
            values = rec["values"]
            if not isinstance(values, list) or any(isinstance(v, bool) for v in values):
                raise ValueError("values is not a list of numbers")
            return cls(rec["method"], tuple(values))
        except (ValueError, TypeError) as exc:
            raise MixsupError(f"damaged stain reference: {exc}",
                              "delete it and train again, or restore the file", path) from exc


def stained_share(rgb: np.ndarray) -> float:
    """The share of pixels with optical density above the background level in every
    channel (torchstain's transparency rule)."""
    od = -np.log((rgb.reshape(-1, 3).astype(np.float32) + 1.0) / _IO)
    return float(np.mean(np.all(od >= _BETA, axis=1))) if od.size else 0.0


def flat(rgb: np.ndarray) -> bool:
    """One colour (or nearly): no spread for a normaliser to match."""
    return bool(rgb.size == 0 or rgb.reshape(-1, 3).std(axis=0).min() < MIN_SPREAD)


def fit_pixels(rgb: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``budget`` of ``rgb``'s pixels, drawn with ``rng``, as an (n, 1, 3) image."""
    pixels = rgb.reshape(-1, 3)
    if len(pixels) > budget:
        pixels = pixels[np.sort(rng.choice(len(pixels), budget, replace=False))]
    return pixels[:, None, :]


def fit_reference(method: StainMethod, patches: list[np.ndarray]) -> StainReference:
    """The reference stain of ``patches`` (RGB uint8 images of any size), fitted on their
    pixels together (at most ``MAX_FIT_PIXELS``, a seeded sample).

    Raises ``ValueError`` when they hold too little tissue or the fit is degenerate."""
    tissue = [p for p in patches if stained_share(p) >= MIN_TISSUE_SHARE]
    if not tissue:
        raise ValueError(f"none of the {len(patches)} reference patches has {MIN_TISSUE_SHARE:.0%}"
                         " stained pixels")
    image = fit_pixels(np.concatenate([p.reshape(-1, 3) for p in tissue]), MAX_FIT_PIXELS,
                       np.random.default_rng(0))
    from torchstain.numpy.normalizers import (  # only when normalising
        NumpyMacenkoNormalizer,
        NumpyReinhardNormalizer,
    )

    with np.errstate(all="ignore"):
        if method == "macenko":
            m = NumpyMacenkoNormalizer()
            m.fit(image, Io=_IO, beta=_BETA)
            values = [*np.asarray(m.HERef).ravel(), *np.asarray(m.maxCRef).ravel()]
        else:
            r = NumpyReinhardNormalizer()
            r.fit(image)
            values = [*np.asarray(r.target_means).ravel(), *np.asarray(r.target_stds).ravel()]
    if not all(np.isfinite(values)):
        raise ValueError("the reference patches give a degenerate stain estimate")
    return StainReference(method, tuple(float(v) for v in values))
