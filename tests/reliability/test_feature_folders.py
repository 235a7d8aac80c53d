"""Feature folders for ``--mode abmil`` are user input too: a ``mixsup features`` folder, or
TRIDENT's, copied, shared between runs or edited. Each damage is one clean error (exit 2)
naming the file at fault, never a failure deep in training and never a run that trains on it
with exit 0."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from mixsup.cli import main
from mixsup.errors import MixsupError
from mixsup.inference.features import open_features
from tests.helpers import FAST
from tests.reliability.builders import cli_fails as _fails
from tests.train.test_abmil_trident import trident_folder

TINY = ["--preset", "tiny", *(a for s in FAST for a in ("--set", s))]
DAMAGED = "feature folder is damaged"


@pytest.fixture(scope="module")
def features(shapes_data, tmp_path_factory) -> Path:
    """The train and val slides' features, made once (then copied to be damaged)."""
    out = tmp_path_factory.mktemp("feats") / "feats"
    assert main(["-q", "features", str(shapes_data), "--out", str(out), *TINY,
                 "--splits", "train,val"]) == 0
    return out




def _train(data: Path, run: Path, feats: Path, *extra: str) -> list[str]:
    return ["-q", "train", str(data), "--mode", "abmil", "--out", str(run), *TINY,
            "--set", f"abmil.features={feats}", "--set", "abmil.epochs=1", *extra]


Edit = Callable[[np.ndarray], np.ndarray]


def rewrite(store: Path, features: Edit | None = None, coords: Edit | None = None,
            **attrs: object) -> None:
    """Write ``store`` again with its arrays edited, bypassing every check of mixsup's."""
    old = zarr.open_group(str(store), mode="r")
    feats, corners = np.asarray(old["features"][:]), np.asarray(old["coords"][:])
    meta = {**dict(old.attrs), **attrs}
    shutil.rmtree(store)
    new = zarr.open_group(str(store), mode="w")
    new.create_array("features", data=feats if features is None else features(feats))
    new.create_array("coords", data=corners if coords is None else coords(corners))
    new.attrs.update(meta)


def _nan(f: np.ndarray) -> np.ndarray:
    f = f.copy()
    f[1, 2] = np.nan
    return f


# Damage one store can carry; each trained with exit 0 or failed deep in training before.
STORE_DAMAGE: dict[str, tuple[dict, str]] = {
    "width 0": ({"features": lambda f: f[:, :0]}, "width 0"),
    "NaN": ({"features": _nan}, "NaN or infinite"),
    "infinity": ({"features": lambda f: f * np.float32(np.inf)}, "NaN or infinite"),
    "huge": ({"features": lambda f: f * 0 + np.float32(3e38)}, "beyond"),
    "another encoder's width": ({"features": lambda f: np.concatenate([f, f[:, :1]], 1)},
                                "another encoder's features"),
    "integers": ({"features": lambda f: f.astype(np.int32)}, "dtype int32"),
    "rows dropped": ({"features": lambda f: f[:-1]}, "for"),
    "coords not the tiling's": ({"coords": lambda c: c + 1}, "not the tiling's"),
    "n_patches a string": ({"n_patches": "many"}, "not a count"),
}


@pytest.mark.parametrize("case", list(STORE_DAMAGE))
def test_a_damaged_store_stops_training_naming_it(shapes_data, features, tmp_path, capsys,
                                                  case):
    feats = tmp_path / "feats"
    shutil.copytree(features, feats)
    store = feats / "slide_001.zarr"
    edits, needle = STORE_DAMAGE[case]
    rewrite(store, **edits)
    _fails(capsys, _train(shapes_data, tmp_path / "run", feats), str(store), DAMAGED, needle)


def _garbage_root(store: Path) -> None:
    (store / "zarr.json").write_text("{not json")


def _cut_chunk(store: Path) -> None:
    for chunk in (store / "features" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(chunk.read_bytes()[:7])


def _no_metadata(store: Path) -> None:
    (store / "features" / "zarr.json").unlink()


@pytest.mark.parametrize("damage", [_garbage_root, _cut_chunk, _no_metadata])
def test_an_unreadable_store_is_one_error_naming_it(features, tmp_path, damage):
    store = tmp_path / "s.zarr"
    shutil.copytree(features / "slide_000.zarr", store)
    damage(store)
    with pytest.raises(MixsupError) as err:
        _ = open_features(store).features
    assert err.value.path == str(store) and DAMAGED in err.value.fix


def test_a_stale_store_is_computed_again_not_refused(features, tmp_path):
    """Made from other tiles (the slide changed) or by another version: not damage."""
    store = tmp_path / "s.zarr"
    shutil.copytree(features / "slide_000.zarr", store)
    assert open_features(store, "another tiling") is None
    rewrite(store, version=0)
    assert open_features(store) is None


def _trident_nan(path: Path) -> None:
    with h5py.File(path, "a") as f:
        f["features"][0, 0] = np.nan


def _trident_width0(path: Path) -> None:
    with h5py.File(path, "a") as f:
        attrs = dict(f["features"].attrs)
        del f["features"]
        f.create_dataset("features", data=np.zeros((16, 0), np.float32)).attrs.update(attrs)


def _trident_narrower(path: Path) -> None:
    with h5py.File(path, "a") as f:
        attrs, values = dict(f["features"].attrs), f["features"][:, :5]
        del f["features"]
        f.create_dataset("features", data=values).attrs.update(attrs)


@pytest.mark.parametrize(("damage", "needle"), [
    (_trident_nan, "NaN or infinite"), (_trident_width0, "width >= 1"),
    (_trident_narrower, "5 wide")])
def test_a_damaged_trident_file_stops_training_naming_it(shapes_data, tmp_path, capsys,
                                                         damage, needle):
    feats = trident_folder(shapes_data, tmp_path / "features_uni_v1")
    damage(feats / "slide_002.h5")
    _fails(capsys, _train(shapes_data, tmp_path / "run", feats, "--set",
                          "abmil.features_format=trident"), str(feats / "slide_002.h5"), needle)


def test_a_stored_tiling_with_tissue_fractions_outside_0_1_is_made_again(shapes_data, features,
                                                                         tmp_path):
    """The one [0, 1] array of a feature folder: the tiling's tissue fraction per patch. A
    stored tiling that breaks it is not used: the slide is tiled again (with a warning)."""
    feats = tmp_path / "feats"
    shutil.copytree(features, feats)
    npz = feats / "tiles" / "slide_000.npz"
    with np.load(npz) as z:
        arrays = dict(z)
    np.savez(npz, coords=arrays["coords"], tissue=arrays["tissue"] * 0 + 2.5)
    assert main(["-q", "features", str(shapes_data), "--out", str(feats), *TINY,
                 "--splits", "train,val"]) == 0
    with np.load(npz) as z:
        assert ((z["tissue"] >= 0) & (z["tissue"] <= 1)).all()
