"""TRIDENT's patch features as the feature folder of ``--mode abmil``
(``abmil.features_format=trident``): one HDF5 file per slide, ``<slide_id>.h5``, only read.

The layout is the one TRIDENT keeps from CLAM:

    features   (N, D) float   one patch encoder's embedding of each patch
    coords     (N, 2) int     each patch's top-left corner in level-0 pixels; its attributes
                              give the patch side in level-0 pixels: ``patch_size_level0``
                              (TRIDENT), else ``patch_size`` x ``level0_magnification`` /
                              ``target_magnification``, else ``patch_size`` at ``patch_level`` 0

The files are read through h5py (no pickle). A file's header (datasets, shapes, dtypes,
attributes) is checked when it is opened, its values when they are read: whatever does not fit
is one ``MixsupError`` naming the file. A ``<slide_id>.h5.lock`` beside a file is TRIDENT still
writing it (or killed while it did).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mixsup.errors import MixsupError
from mixsup.inference.features import SlideFeatures, check_widths, checked_features
from mixsup.storage.user_files import finite, not_a_file, own_file

FORMAT = "trident"
TRIDENT_FIX = ("delete this file and rerun TRIDENT's patch feature extraction for its slide "
               "into the same folder (it redoes only the slides whose file is missing)")
FOLDER_HELP = ("set abmil.features to TRIDENT's features_<encoder>/ folder, which holds one "
               "<slide_id>.h5 per slide")
ONE_ENCODER = ("keep one encoder's files per folder (TRIDENT's features_<encoder>/): move "
               "this one out and rerun TRIDENT for its slide with the others' encoder")
MAX_SIZE0 = 1e6  # level-0 pixels: a patch side past this is a broken attribute


@dataclass(frozen=True)
class TridentFeatures(SlideFeatures):
    """One slide's TRIDENT file by reference, its header checked; read when asked for."""

    size0: float | None  # the patch side in level-0 pixels; None where the attributes lack it
    encoder: str | None  # the ``features`` dataset's ``encoder`` attribute (TRIDENT's name)

    @property
    def features(self) -> np.ndarray:
        """(N, D) as stored: finite floats of the header's shape."""
        if not self.n:  # TRIDENT writes an empty slide's features as (0,)
            return np.zeros((0, self.dim), np.float32)
        with _reading(self.path), h5py.File(self.path, "r") as f:
            values = np.asarray(_dataset(f, "features")[()])
        return checked_features(values, self.n, self.dim, self.path, TRIDENT_FIX)

    @property
    def coords(self) -> np.ndarray:
        """(N, 2) int64 level-0 top-left corners."""
        with _reading(self.path), h5py.File(self.path, "r") as f:
            raw = np.asarray(_dataset(f, "coords")[()])
        return _corners(raw, self.n, self.path)


def open_trident(path: Path) -> TridentFeatures:
    """A slide's TRIDENT file by reference: its header (datasets, shapes, dtypes, the coords'
    attributes) read and checked, the arrays left on disk."""
    if os.path.lexists(f"{path}.lock"):
        raise MixsupError("TRIDENT is still writing this file, or stopped while writing it "
                          "(a .lock file lies beside it)", "let TRIDENT finish, or delete the "
                          "file and its .lock and rerun TRIDENT's patch feature extraction",
                          path)
    if not os.path.lexists(path):
        raise MixsupError("no TRIDENT features for this slide", "run TRIDENT's patch feature "
                          "extraction on the slide into this folder: each file is named after "
                          "the slide_id of slides.csv", path)
    kind = not_a_file(path)
    if kind:
        raise MixsupError(f"the TRIDENT feature file is {kind}, not a regular file",
                          TRIDENT_FIX, path)
    with _reading(path), h5py.File(path, "r") as f:
        feats, coords = _dataset(f, "features"), _dataset(f, "coords")
        n, dim = _header(feats, coords)
        record = TridentFeatures(path, n, dim, _size0(coords.attrs),
                                 _text(feats.attrs, "encoder"))
    return record


def open_folder(folder: Path, slide_ids: Mapping[int, str]) -> dict[int, TridentFeatures]:
    """The TRIDENT files of ``slide_ids`` (index -> slide_id) in ``folder``: each one there
    and sound, all of one encoder (one width, one ``encoder`` attribute)."""
    check_folder(folder)
    got = {i: open_trident(folder / f"{sid}.h5") for i, sid in slide_ids.items()}
    one_encoder(list(got.values()))
    return got


def check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise MixsupError("the TRIDENT feature folder is not there", FOLDER_HELP, folder)


def one_encoder(records: list[TridentFeatures]) -> int:
    """The files' one width; files of two encoders (by width or name) are refused."""
    names = [r for r in records if r.encoder is not None]
    for r in names[1:]:
        if r.encoder != names[0].encoder:
            raise MixsupError(f"features of encoder {r.encoder!r} beside {names[0].encoder!r} "
                              f"({names[0].path.name}): two encoders' features are never mixed",
                              ONE_ENCODER, r.path)
    return check_widths(list(records), fix=ONE_ENCODER)


def fingerprint(records: list[TridentFeatures]) -> dict[str, Any]:
    """What a bundle trained on these files records of them: their width and encoder."""
    names = [r.encoder for r in records if r.encoder is not None]
    return {"format": FORMAT, "dim": one_encoder(records), "encoder": names[0] if names else None}


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Read a TRIDENT file inside this block: whatever a damaged one raises (h5py's OSError
    on a file that is not HDF5 or is cut short, a KeyError...) is one ``MixsupError``."""
    with own_file(path, "TRIDENT feature file", TRIDENT_FIX):
        try:
            yield
        except (FileNotFoundError, PermissionError):
            raise
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"not a readable HDF5 file: {exc}") from None


def _dataset(f: h5py.File, name: str) -> h5py.Dataset:
    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        raise MixsupError(f"the file has no {name!r} dataset (TRIDENT's layout: features "
                          "(N, D) and coords (N, 2))")
    return obj


def _header(feats: h5py.Dataset, coords: h5py.Dataset) -> tuple[int, int]:
    """(patches, width) from the datasets' shapes and dtypes."""
    shape, cshape = tuple(feats.shape or ()), tuple(coords.shape or ())
    if feats.dtype.kind != "f":
        raise MixsupError(f"features of dtype {feats.dtype}, not floating point")
    if coords.dtype.kind not in "iuf":
        raise MixsupError(f"coords of dtype {coords.dtype}, not numbers")
    if shape in ((0,), (0, *shape[1:2])) and cshape in ((0,), (0, 2)):
        return 0, int(shape[1]) if len(shape) == 2 else 0  # a slide without patches
    if len(shape) != 2 or shape[1] < 1:
        raise MixsupError(f"features of shape {shape}, not (patches, width >= 1)")
    if cshape != (shape[0], 2):
        raise MixsupError(f"coords of shape {cshape} for features of shape {shape}: one (x, y) "
                          "row per feature row is needed")
    return int(shape[0]), int(shape[1])


def _corners(raw: np.ndarray, n: int, path: Path) -> np.ndarray:
    """Level-0 corners as int64: whole, non-negative numbers, one row per patch."""
    if raw.shape != (n, 2) and not (n == 0 and raw.size == 0):
        raise MixsupError(f"coords of shape {raw.shape}, not ({n}, 2)", TRIDENT_FIX, path)
    raw = raw.reshape(n, 2)
    if raw.dtype.kind == "f" and not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
        raise MixsupError("coords hold NaN, infinite or fractional values", TRIDENT_FIX, path)
    if (raw < 0).any() or (raw >= 2 ** 53).any():
        raise MixsupError("coords hold negative or huge values: not level-0 pixels",
                          TRIDENT_FIX, path)
    return raw.astype(np.int64)


def _value(attrs: Any, key: str) -> Any:
    """An attribute as a Python value (numpy scalars unwrapped; TRIDENT writes None as
    'None'), or None."""
    raw = attrs.get(key)
    if isinstance(raw, np.ndarray) and raw.size == 1:
        raw = raw.reshape(()).item()
    if isinstance(raw, np.generic):
        raw = raw.item()
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return None if raw is None or raw == "None" else raw


def _number(attrs: Any, key: str, low: float) -> float | None:
    raw = _value(attrs, key)
    return None if raw is None else finite(raw, f"coords attribute {key}", low=low,
                                           high=MAX_SIZE0)


def _size0(attrs: Any) -> float | None:
    """The patch side in level-0 pixels, from the first attributes that give it."""
    size0 = _number(attrs, "patch_size_level0", 1.0)
    if size0 is not None:
        return size0
    size, level = _number(attrs, "patch_size", 1.0), _number(attrs, "patch_level", 0.0)
    src, dst = (_number(attrs, "level0_magnification", 1e-3),
                _number(attrs, "target_magnification", 1e-3))
    if size is not None and src is not None and dst is not None:
        return finite(size * src / dst, "the patch side in level-0 pixels", low=1.0,
                      high=MAX_SIZE0)
    return size if size is not None and level == 0 else None


def _text(attrs: Any, key: str) -> str | None:
    raw = _value(attrs, key)
    return raw if isinstance(raw, str) else None
