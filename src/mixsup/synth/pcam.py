"""Slides mosaicked from real PatchCamelyon patches, with known tumour outlines.

Normal patches tile the tissue; inside each tumour outline the pixels come from tumour patches,
so lesion borders follow the outline, not the 96-px patch grid. Train slides use PCam's
``train`` patches; PCam's ``valid`` patches are split in two halves, one for val slides and one
for test slides, so no patch is shared between splits.

PCam's ``valid`` patches also fall in two pools fixed by their content (md5): ``dev``, for
every mosaic that anything is tuned on, and ``sealed``, kept for a pre-registered test
(``docs/preregistration.md``). A ``sealed`` mosaic's test slides draw from the whole sealed
pool when it has no val slides.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2
import numpy as np

from mixsup.errors import MixsupError
from mixsup.labels.raster import rasterize_geometry
from mixsup.synth.layout import SlideLayout, plan_patients, plan_slides, write_dataset
from mixsup.synth.pyramid_tiff import Renderer, array_renderer
from mixsup.synth.stain import apply_center

log = logging.getLogger(__name__)
PCAM_MPP = 0.972  # PatchCamelyon: Camelyon16 at 10x
POOLS = ("all", "dev", "sealed")
GLASS = np.array([242, 241, 245], np.uint8)


@dataclass(frozen=True)
class PatchBank:
    normal: np.ndarray  # (N, 96, 96, 3) uint8 RGB
    tumor: np.ndarray

    @property
    def size(self) -> int:
        return int(self.normal.shape[1])

    def half(self, which: int) -> PatchBank:
        """Every other patch of each class from ``which`` (0 or 1): the two halves share none."""
        return PatchBank(self.normal[which::2], self.tumor[which::2])


def in_sealed_pool(digest: str) -> bool:
    """Whether a ``valid`` patch with this md5 hex digest belongs to the sealed pool (about half
    of them, fixed by content, so the same files fall in the same pool on every machine)."""
    return int(digest, 16) % 2 == 1


def load_banks(root: str | Path, pool: str = "all") -> dict[str, PatchBank]:
    """PCam patches by PCam split ('train', 'valid'), exact duplicates removed by md5;
    ``pool`` ('all', 'dev' or 'sealed') keeps that pool of the ``valid`` patches."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, not {pool!r}")
    root = Path(root)
    table = root / "labels.csv"
    if not table.is_file():
        raise MixsupError("no labels.csv in the PatchCamelyon folder",
                          "pass --pcam pointing at a folder with labels.csv and the patch "
                          "images (layout of ../shared/data/pcam)", root)
    groups: dict[tuple[str, str], list[np.ndarray]] = {}
    seen: set[str] = set()
    with open(table, newline="") as fh:
        for row in csv.DictReader(fh):
            raw = (root / row["path"]).read_bytes()
            digest = hashlib.md5(raw).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            if pool != "all" and row["split"] == "valid" and (
                    in_sealed_pool(digest) != (pool == "sealed")):
                continue
            img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise MixsupError("cannot decode patch image", "remove or replace it",
                                  root / row["path"])
            groups.setdefault((row["split"], row["label"]), []).append(
                cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    banks = {}
    for split in {s for s, _ in groups}:
        normal, tumor = groups.get((split, "0"), []), groups.get((split, "1"), [])
        if normal and tumor:
            banks[split] = PatchBank(np.stack(normal), np.stack(tumor))
    if not banks:
        raise MixsupError("found no split with both normal and tumour patches",
                          "check labels.csv (columns split,label,path)", table)
    return banks


def slide_banks(banks: dict[str, PatchBank], whole_test: bool = False) -> dict[str, PatchBank]:
    """The bank of each slide split: train <- PCam train; val and test <- the two halves of
    PCam valid, so that no source patch sits in both a val and a test slide. ``whole_test``
    (a mosaic without val slides): test slides draw from all of PCam valid."""
    train = banks.get("train") or next(iter(banks.values()))
    held = banks.get("valid")
    if held is None:
        log.warning("the PatchCamelyon folder has no 'valid' split: val and test slides draw "
                    "from the same patches as train slides")
        held = train
    if min(len(held.normal), len(held.tumor)) < 2:
        raise MixsupError("too few 'valid' patches to give val and test slides their own",
                          "provide at least 2 normal and 2 tumour patches in the valid split")
    if whole_test:
        return {"train": train, "val": held, "test": held}
    return {"train": train, "val": held.half(0), "test": held.half(1)}


def _mosaic(bank: np.ndarray, w: int, h: int, rng: np.random.Generator,
            cells: np.ndarray) -> np.ndarray:
    """Fill the grid cells flagged in ``cells`` with random, randomly rotated/flipped patches."""
    p = bank.shape[1]
    out = np.empty((h, w, 3), np.uint8)
    out[:] = GLASS
    for cy, cx in zip(*np.nonzero(cells), strict=True):
        patch = np.rot90(bank[rng.integers(len(bank))], k=int(rng.integers(4)))
        if rng.uniform() < 0.5:
            patch = patch[:, ::-1]
        y, x = cy * p, cx * p
        out[y:y + p, x:x + p] = patch[: h - y, : w - x]
    return out


def pcam_renderer(banks: dict[str, PatchBank]) -> Callable[[SlideLayout], Renderer]:
    """``banks`` by slide split, as ``slide_banks`` makes them."""

    def renderer_for(lay: SlideLayout) -> Renderer:
        bank = banks[lay.split]
        rng = np.random.default_rng(lay.seed)
        p = bank.size
        gw, gh = -(-lay.width // p), -(-lay.height // p)
        tissue = rasterize_geometry(lay.tissue, 0, 0, lay.width, lay.height)
        cells = _cells(tissue, p, gw, gh)
        img = _mosaic(bank.normal, lay.width, lay.height, rng, cells)
        if not lay.tumor.is_empty:
            tumor = rasterize_geometry(lay.tumor, 0, 0, lay.width, lay.height) & tissue
            tumor_img = _mosaic(bank.tumor, lay.width, lay.height, rng, _cells(tumor, p, gw, gh))
            img[tumor] = tumor_img[tumor]
        img[~tissue] = GLASS
        return array_renderer(apply_center(img, lay.center))

    return renderer_for


def _cells(mask: np.ndarray, p: int, gw: int, gh: int) -> np.ndarray:
    padded = np.zeros((gh * p, gw * p), bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    # numpy's stubs allow a scalar; reducing two of four axes always leaves a 2-D array
    return cast(np.ndarray, padded.reshape(gh, p, gw, p).any(axis=(1, 3)))


def make_pcam(out: str | Path, pcam_root: str | Path, n_slides: int = 60, size: int = 3072,
              seed: int = 0, annotated_fraction: float = 0.5,
              tumor_radius: tuple[float, float] = (0.03, 0.08),
              splits: tuple[float, float, float] = (0.5, 0.15, 0.35),
              patients: int | None = None, progress: bool = True,
              compression: str = "jpeg", truth_dir: str | Path | None = None,
              pool: str = "all") -> Path:
    """With ``patients``, 5 lymph nodes per patient with Camelyon17-like node classes (slides
    of at least 4096 px, so that macro-metastases over 2 mm fit in the tissue). ``pool``: which
    of PCam valid's pools the val and test slides draw from (module docstring)."""
    banks = load_banks(pcam_root, pool)
    if patients:
        layouts = plan_patients(patients, max(size, 4096), PCAM_MPP, seed=seed,
                                annotated_fraction=annotated_fraction)
    else:
        layouts = plan_slides(n_slides, size, size, seed=seed,
                              annotated_fraction=annotated_fraction, tumor_radius=tumor_radius,
                              splits=splits)
    whole_test = pool == "sealed" and not any(lay.split == "val" for lay in layouts)
    return write_dataset(out, layouts, PCAM_MPP, pcam_renderer(slide_banks(banks, whole_test)),
                         progress=progress, compression=compression, truth_dir=truth_dir)
