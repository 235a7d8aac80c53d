"""TRIDENT's patch features read as a feature folder (``abmil.features_format=trident``):
the layout TRIDENT writes, read back as it is, and every damaged file one ``MixsupError``
naming it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from mixsup.errors import MixsupError
from mixsup.inference.trident_features import fingerprint, open_folder, open_trident

# What TRIDENT's coords_to_h5 writes on ``coords`` (a 20x patch of 256 px on a 40x scan).
TRIDENT_ATTRS = {"patch_size": 256, "patch_size_level0": 512, "level0_magnification": 40,
                 "target_magnification": 20, "overlap": 0, "name": "s", "savetodir": "x",
                 "level0_width": 4096, "level0_height": 4096}


def trident_file(path: Path, feats: np.ndarray, coords: np.ndarray,
                 attrs: dict | None = None, encoder: str | None = "uni_v1") -> Path:
    """A ``<slide_id>.h5`` as TRIDENT's ``extract_patch_features`` lays it out."""
    with h5py.File(path, "w") as f:
        fd = f.create_dataset("features", data=feats)
        fd.attrs["name"] = path.stem
        fd.attrs["encoder"] = "None" if encoder is None else encoder
        cd = f.create_dataset("coords", data=coords)
        for k, v in (TRIDENT_ATTRS if attrs is None else attrs).items():
            cd.attrs[k] = v
    return path


def grid(n: int, step: int = 512) -> np.ndarray:
    return np.array([(step * (i % 8), step * (i // 8)) for i in range(n)], np.int64)


def test_a_trident_file_reads_back_as_written(tmp_path):
    feats = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float16)
    rec = open_trident(trident_file(tmp_path / "s.h5", feats, grid(10)))
    assert (rec.n, rec.dim, rec.size0, rec.encoder) == (10, 6, 512.0, "uni_v1")
    assert np.array_equal(rec.features, feats) and rec.features.dtype == np.float16
    assert np.array_equal(rec.coords, grid(10)) and rec.coords.dtype == np.int64


@pytest.mark.parametrize(("attrs", "size0"), [
    ({"patch_size": 256, "level0_magnification": 40, "target_magnification": 20}, 512.0),
    ({"patch_size": 224, "patch_level": 0}, 224.0),  # CLAM's
    ({"patch_size": np.int64(256), "patch_size_level0": np.float64(1024.0)}, 1024.0),
    ({"patch_size": 256, "patch_level": 1}, None),  # CLAM at level 1: no level-0 side known
])
def test_the_level0_patch_side_comes_from_the_attributes(tmp_path, attrs, size0):
    rec = open_trident(trident_file(tmp_path / "s.h5", np.ones((3, 2), np.float32), grid(3),
                                    attrs, encoder=None))
    assert rec.size0 == size0 and rec.encoder is None


def test_an_empty_slide_has_no_patches(tmp_path):
    """TRIDENT writes a slide without tissue as features (0,) and coords (0, 2)."""
    rec = open_trident(trident_file(tmp_path / "s.h5", np.empty((0,), np.float32),
                                    np.empty((0, 2), np.int64)))
    assert rec.n == 0 and rec.features.shape[0] == 0 and rec.coords.shape == (0, 2)


def _rewrite(edit: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with h5py.File(path, "a") as f:
            edit(f)
    return damage


def _replace(name: str, data: np.ndarray) -> Callable[[Path], None]:
    def edit(f: h5py.File) -> None:
        attrs = dict(f[name].attrs)
        del f[name]
        f.create_dataset(name, data=data)
        f[name].attrs.update(attrs)
    return _rewrite(edit)


def _nan(path: Path) -> None:
    with h5py.File(path, "a") as f:
        f["features"][3, 1] = np.nan


def _attr(key: str, value: object) -> Callable[[Path], None]:
    def edit(f: h5py.File) -> None:
        f["coords"].attrs[key] = value
    return _rewrite(edit)


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "no features": (_rewrite(lambda f: f.__delitem__("features")), "no 'features' dataset"),
    "no coords": (_rewrite(lambda f: f.__delitem__("coords")), "no 'coords' dataset"),
    "features a group": (_rewrite(lambda f: (f.__delitem__("features"),
                                             f.create_group("features"))), "'features'"),
    "width 0": (_replace("features", np.zeros((8, 0), np.float32)), "width >= 1"),
    "1-d features": (_replace("features", np.zeros(8, np.float32)), "not (patches, width"),
    "3-d features": (_replace("features", np.zeros((8, 2, 2), np.float32)), "shape"),
    "integer features": (_replace("features", np.zeros((8, 4), np.int32)), "not floating"),
    "string coords": (_replace("coords", np.array([b"a"] * 8)), "coords of dtype"),
    "NaN": (_nan, "NaN or infinite"),
    "rows differ": (_replace("coords", grid(7)), "one (x, y) row per feature row"),
    "coords (N, 3)": (_replace("coords", np.zeros((8, 3), np.int64)), "coords of shape"),
    "fractional coords": (_replace("coords", grid(8) + 0.5), "fractional"),
    "negative coords": (_replace("coords", grid(8) - 1000), "negative"),
    "patch size 0": (_attr("patch_size_level0", 0), "patch_size_level0 is 0"),
    "patch size NaN": (_attr("patch_size_level0", np.nan), "not a finite number"),
    "patch size text": (_attr("patch_size_level0", "big"), "not a finite number"),
    "magnification 0": (_attr("target_magnification", 0.0), "target_magnification"),
    "not HDF5": (lambda p: p.write_bytes(b"not an hdf5 file at all" * 10),
                 "not a readable HDF5 file"),
    "cut short": (lambda p: p.write_bytes(p.read_bytes()[:3000]), "HDF5"),
    "being written": (lambda p: Path(f"{p}.lock").write_text(""), "still writing"),
    "gone": (lambda p: p.unlink(), "no TRIDENT features for this slide"),
    "a folder": (lambda p: (p.unlink(), p.mkdir()), "is a folder"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_trident_file_is_one_error_naming_it(tmp_path, case):
    path = trident_file(tmp_path / "s.h5", np.ones((8, 4), np.float32), grid(8))
    damage, needle = DAMAGE[case]
    if case == "magnification 0":
        _rewrite(lambda f: f["coords"].attrs.__delitem__("patch_size_level0"))(path)
    damage(path)
    with pytest.raises(MixsupError) as err:
        rec = open_trident(path)
        _ = rec.features, rec.coords
    assert err.value.path == str(path) and needle in str(err.value), str(err.value)
    assert err.value.fix


def test_a_folder_of_two_encoders_is_refused(tmp_path):
    ones = np.ones((4, 8), np.float32)
    trident_file(tmp_path / "a.h5", ones, grid(4))
    trident_file(tmp_path / "b.h5", ones, grid(4), encoder="conch_v15")
    trident_file(tmp_path / "c.h5", np.ones((4, 9), np.float32), grid(4))
    got = open_folder(tmp_path, {0: "a"})
    assert fingerprint(list(got.values())) == {"format": "trident", "dim": 8,
                                               "encoder": "uni_v1"}
    with pytest.raises(MixsupError, match="two encoders") as err:
        open_folder(tmp_path, {0: "a", 1: "b"})
    assert err.value.path == str(tmp_path / "b.h5")
    with pytest.raises(MixsupError, match="9 wide") as err:
        open_folder(tmp_path, {0: "a", 2: "c"})
    assert err.value.path == str(tmp_path / "c.h5")
    with pytest.raises(MixsupError, match="folder is not there"):
        open_folder(tmp_path / "nowhere", {0: "a"})
