"""The E-step rules of the paper, and the switches measured against them, as pure functions."""

from __future__ import annotations

import numpy as np

from mixsup.labels.regions import IGNORE, POSITIVE


def keep_patches(max_prob: np.ndarray, threshold: float, keep_top: int = 0) -> np.ndarray:
    """T filter: keep patches whose highest pixel probability reaches ``threshold``.

    ``keep_top`` > 0 (for positive slides): when no patch reaches T, keep the ``keep_top``
    highest instead, since every positive slide holds tumour somewhere.
    """
    max_prob = np.asarray(max_prob)
    keep = max_prob >= threshold
    if keep_top > 0 and not keep.any() and len(max_prob):
        top = np.argsort(-max_prob, kind="stable")[:keep_top]
        keep[top] = True
    return keep


def pseudo_positive(prob: np.ndarray, reweight: float, floor: float) -> np.ndarray:
    """y_p+ = clip(p * V, 0, 1), with values below ``floor`` set to 0."""
    y = np.clip(np.asarray(prob, dtype=np.float32) * reweight, 0.0, 1.0)
    y[y < floor] = 0.0
    return y


def pseudo_target(prob: np.ndarray, reweight: float, floor: float,
                  kind: str = "soft") -> tuple[np.ndarray, np.ndarray]:
    """(target, loss mask) of a pseudo-positive map.

    ``soft`` (the paper): the whole map, y_p+ as above. ``confident``: 1 where V·p >= 1, 0
    where V·p < floor, and the band between left out of the loss.
    """
    y = pseudo_positive(prob, reweight, floor)
    if kind == "soft":
        return y, np.ones_like(y)
    if kind != "confident":
        raise ValueError(f"unknown pseudo-label kind {kind!r}")
    sure = (y >= 1.0) | (y == 0.0)
    return (y >= 1.0).astype(np.float32), sure.astype(np.float32)


def annotation_wins(target: np.ndarray, valid: np.ndarray,
                    mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """On an annotated slide a pseudo-label keeps only the pixels nobody annotated: where the
    annotation ``mask`` labels a pixel (tumour or negative), its label replaces the pseudo one."""
    labelled = mask != IGNORE
    return (np.where(labelled, (mask == POSITIVE).astype(np.float32), target),
            np.where(labelled, np.float32(1.0), valid).astype(np.float32))
