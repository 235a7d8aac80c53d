"""Hypothesis over a model bundle and a feature folder (issue 39): ``bundle.json``'s fields
(operating_threshold, the preprocessing numbers, theta2, mode, the stain reference, the
config) and the weights files, read by ``read_bundle``/``load_bundle`` and ``mixsup predict``;
and a ``mixsup features`` folder read by ``train --mode abmil``. The invariant: a clean error
(exit 2) naming the bundle or the feature folder, or a correct result; never the catch-all.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mixsup.cli import main  # noqa: E402
from mixsup.errors import MixsupError  # noqa: E402
from tests.helpers import FAST  # noqa: E402
from tests.reliability.tamper import (  # noqa: E402
    FEATURE_DAMAGE,
    HOSTILE,
    budget,
    checkpoint_damage,
    damage_feature_store,
    damaged_bytes,
    dump,
    json_damage,
    names,
    run_cli,
    started,
)

TINY = ["--preset", "tiny", *(a for s in FAST for a in ("--set", s))]


def _link_weights(src: str, dst: str) -> None:
    if src.endswith(".pt"):  # replaced, never written into: the damage unlinks first
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


@pytest.fixture
def scratch(tmp_path) -> Iterator[Any]:
    """``copy(folder)``: a new copy of ``folder`` for each example, the last one removed."""
    made: list[Path] = []

    def copy(folder: Path) -> Path:
        while made:
            shutil.rmtree(made.pop(), ignore_errors=True)
        made.append(Path(tempfile.mkdtemp(dir=tmp_path)))
        shutil.copytree(folder, made[0] / folder.name, copy_function=_link_weights)
        return made[0] / folder.name

    yield copy
    while made:
        shutil.rmtree(made.pop(), ignore_errors=True)


# -- (b) a bundle ---------------------------------------------------------------------------
BUNDLE_FOCUS = (
    ("operating_threshold",), ("mode",), ("format",), ("theta2",), ("theta1",),
    ("theta2", "init"), ("theta1", "encoder"), ("selected_round",), ("preprocessing",),
    ("preprocessing", "mpp"), ("preprocessing", "patch_size"), ("preprocessing", "overlap"),
    ("preprocessing", "map_downsample"), ("preprocessing", "top_k"),
    ("preprocessing", "stain"), ("preprocessing", "normalisation"),
    ("preprocessing", "normalisation", "theta1", "mean"),
    ("preprocessing", "normalisation", "theta1", "std"),
    ("preprocessing", "normalisation", "theta1", "scale"),
    ("preprocessing", "normalisation", "theta2", "resize_to"),
    ("preprocessing", "tissue", "thumbnail_mpp"), ("preprocessing", "tissue", "method"),
    ("preprocessing", "tissue", "min_region_um2"), ("config",), ("config", "tiling", "mpp"),
    ("config", "tiling", "patch_size"), ("config", "stage2", "top_k"),
    ("config", "model", "encoder"), ("config", "stain", "normalise"),
    ("config", "model", "encoder_kwargs"), ("config", "stage2", "init"),
)
STAIN = st.fixed_dictionaries({"method": st.sampled_from(["macenko", "reinhard", "none", "x"]),
                               "values": st.one_of(st.lists(st.one_of(
                                   st.floats(-1e3, 1e3), st.sampled_from([0.0, 1e300])),
                                   min_size=6, max_size=8), HOSTILE)})


@st.composite
def stained(draw: st.DrawFn, doc: dict) -> bytes:
    """A bundle that normalises stains, with a drawn reference record."""
    doc = json.loads(json.dumps(doc))
    doc["config"]["stain"] = {"normalise": draw(st.sampled_from(["macenko", "reinhard"]))}
    doc["preprocessing"]["stain"] = draw(st.one_of(STAIN, HOSTILE))
    return dump(doc)


def _damage_bundle(data: st.DataObject, bundle: Path) -> str:
    import torch

    rel = data.draw(st.sampled_from(["bundle.json"] * 4 + ["theta1.pt", "theta2.pt"]),
                    label="file")
    path = bundle / rel
    raw = path.read_bytes()
    path.unlink()  # a new file: the weights are linked to the template's
    if rel == "bundle.json":
        doc = json.loads(raw)
        path.write_bytes(data.draw(st.one_of(json_damage(raw, BUNDLE_FOCUS), stained(doc)),
                                   label=rel))
    elif data.draw(st.booleans(), label="edit weights"):
        state = torch.load(io.BytesIO(raw), weights_only=True)
        torch.save(data.draw(checkpoint_damage(state), label=rel), path)
    else:
        path.write_bytes(data.draw(damaged_bytes(raw), label=rel))
    return rel


@budget(30)
@given(data=st.data())
def test_fuzz_read_and_load_a_damaged_bundle(trained, scratch, data):
    from mixsup.methods.bundle import load_bundle, read_bundle
    from mixsup.predict.engine import predict_config

    bundle = scratch(trained.run_dir / "bundle")
    _damage_bundle(data, bundle)
    try:
        file = read_bundle(bundle)
        cfg = predict_config(file)
        models = load_bundle(file)
    except MixsupError as exc:
        assert names(str(exc), bundle), exc
        return
    assert 0 <= file.threshold <= 1
    assert math.isfinite(file.meta.preprocessing.mpp) and cfg.tiling.mpp > 0
    assert models.theta1 is not None


@pytest.fixture(scope="module")
def one_slide(shapes_data) -> Path:
    return shapes_data / "slides" / "slide_005.tiff"


@budget(8)
@given(data=st.data())
def test_fuzz_predict_with_a_damaged_bundle(trained, one_slide, scratch, tmp_path, capsys,
                                            data):
    bundle = scratch(trained.run_dir / "bundle")
    _damage_bundle(data, bundle)
    out = bundle.parent / "pred"
    code, err = run_cli(capsys, ["-q", "predict", str(bundle), str(one_slide), "--out",
                                 str(out)])
    if code == 2:
        assert names(err, bundle), err
        assert not (out / "predictions.csv").exists()
    else:
        with open(out / "predictions.csv") as fh:
            rows = fh.read().splitlines()[1:]
        assert rows and all(0 <= float(r.split(",")[1]) <= 1 for r in rows)


# -- (c) a feature folder, read by attention-MIL training --------------------------------------
@pytest.fixture(scope="module")
def feature_folder(shapes_data, tmp_path_factory) -> Path:
    feats = tmp_path_factory.mktemp("fuzz_feats") / "feats"
    assert main(["-q", "features", str(shapes_data), "--out", str(feats), *TINY,
                 "--splits", "train,val"]) == 0
    shutil.rmtree(feats / "graphs", ignore_errors=True)
    return feats


@pytest.fixture
def no_embedding(monkeypatch):
    """Computing features again is replaced by ``Started``: a damaged store that is
    recomputed is a correct answer."""
    monkeypatch.setattr("mixsup.inference.features.embed_slides", started)


FEATURE_FOCUS = (("attributes", "key"), ("attributes", "version"),
                 ("attributes", "n_patches"), ("attributes", "dim"), ("attributes", "dtype"),
                 ("attributes", "fingerprint"), ("shape",), ("data_type",), ("chunk_grid",),
                 ("codecs",), ("fill_value",), ("id",), ("fingerprint",))
STORE_FILES = ["features.json", "slide_000.zarr/zarr.json", "slide_000.zarr/features/zarr.json",
               "slide_000.zarr/coords/zarr.json", "slide_000.zarr/features/c/0/0",
               "slide_000.zarr/coords/c/0/0"]


def _damage_features(data: st.DataObject, feats: Path) -> str:
    rel = data.draw(st.sampled_from(STORE_FILES), label="file")
    path = feats / rel
    raw = path.read_bytes()
    if path.name.endswith("json"):
        path.write_bytes(data.draw(json_damage(raw, FEATURE_FOCUS), label=rel))
    else:
        path.write_bytes(data.draw(damaged_bytes(raw), label=rel))
    return rel


def _train_abmil(capsys, shapes_data: Path, feats: Path) -> tuple[int | str, str, Path]:
    run = feats.parent / "run"
    code, err = run_cli(capsys, ["-q", "train", str(shapes_data), "--mode", "abmil", "--out",
                                 str(run), *TINY, "--set", "abmil.epochs=1", "--set",
                                 f"abmil.features={feats}"])
    return code, err, run


def _abmil_run_is_sound(run: Path) -> None:
    from mixsup.methods.bundle import read_bundle

    summary = json.loads((run / "abmil" / "summary.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))
    assert summary["epoch_losses"]
    assert 0 <= read_bundle(run).threshold <= 1


@budget(16)
@given(data=st.data())
def test_fuzz_abmil_on_a_damaged_feature_folder(shapes_data, feature_folder, scratch,
                                                no_embedding, capsys, data):
    feats = scratch(feature_folder)
    _damage_features(data, feats)
    code, err, run = _train_abmil(capsys, shapes_data, feats)
    if code == 2:
        assert names(err, feats), err
    elif code == 0:
        _abmil_run_is_sound(run)


# Stores whose metadata is sound but whose arrays are not (inference/features.py checks them).
BAD_ARRAYS = st.sampled_from(FEATURE_DAMAGE)


@budget(10)
@given(how=BAD_ARRAYS, slide=st.sampled_from(["slide_000", "slide_004"]))
def test_fuzz_abmil_on_feature_stores_holding_bad_arrays(shapes_data, feature_folder, scratch,
                                                         no_embedding, capsys, how, slide):
    import zarr

    feats = scratch(feature_folder)
    damage_feature_store(zarr.open_group(str(feats / f"{slide}.zarr"), mode="r+"), how)
    code, err, run = _train_abmil(capsys, shapes_data, feats)
    if code == 2:
        assert names(err, feats), err
    elif code == 0:
        _abmil_run_is_sound(run)


# -- regressions the corpus found (tools/hostile_corpus.py) ------------------------------------
@pytest.fixture(scope="module")
def one_prediction(trained, one_slide, tmp_path_factory) -> Path:
    pred = tmp_path_factory.mktemp("fuzz_pred") / "pred"
    assert main(["-q", "predict", str(trained.run_dir), str(one_slide), "--out", str(pred)]) == 0
    return pred


@pytest.mark.parametrize("store", ["probmaps/slide_005.zarr", "maps/slide_005.zarr/coords",
                                   "maps/slide_005.zarr/max_prob"])
def test_export_qupath_names_a_map_whose_chunk_cannot_be_decoded(one_prediction, tmp_path,
                                                                  capsys, store):
    """zstd raised RuntimeError on a damaged chunk: the catch-all, not the map's name."""
    pred = tmp_path / "pred"
    shutil.copytree(one_prediction, pred)
    chunk = next(p for p in sorted((pred / store).rglob("*")) if p.is_file()
                 and p.name != "zarr.json")
    chunk.write_bytes(b"\xff\xfe")
    code, err = run_cli(capsys, ["-q", "export-qupath", str(pred), "--out",
                                 str(tmp_path / "qupath")])
    assert code == 2 and str(pred / store.split("/coords")[0].split("/max_prob")[0]) in err, err
