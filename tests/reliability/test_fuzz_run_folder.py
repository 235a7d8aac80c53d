"""Hypothesis over a finished run folder (issue 39): any file of it damaged (truncated, not
UTF-8, a value of the wrong type, a key missing, NaN or a huge number, weights of the wrong
shape) and then read by ``train --resume`` or ``rounds``. The invariant: a clean error naming
the run folder (exit 2), the damaged part redone, or a correct result; never the catch-all,
never a hang. ``test_own_folders.py`` holds the hand-written cases this generalises.

Training itself is replaced by ``Started`` (tamper.py): where a resume decides to redo a
round, that decision is the answer, and the fuzz test stays within seconds per example.
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

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
import yaml  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.helpers import FAST  # noqa: E402
from tests.reliability.tamper import (  # noqa: E402
    HOSTILE,
    budget,
    checkpoint_damage,
    damaged_bytes,
    dump,
    edited,
    json_damage,
    names,
    run_cli,
    started,
)

TINY = ["--preset", "tiny", *(a for s in FAST for a in ("--set", s))]

# The files a resume or `rounds` reads; SEL is the selected round's folder.
JSON_FILES = ["summary.json", "round_0/summary.json", "round_1/summary.json",
              "round_2/summary.json", "SEL/stage2/summary.json", "round_2/stage2/summary.json",
              "round_1/pools.json", "stage1.json", "phases.json", "tiles/slide_000.json",
              "tiles/summary.json", "bundle/bundle.json",
              "round_1/maps/slide_000.zarr/zarr.json",
              "round_1/maps/slide_000.zarr/max_prob/zarr.json"]
BINARY_FILES = ["round_1/model.pt", "SEL/stage2/model.pt", "round_0/model.pt",
                "round_1/negatives.npy", "tiles/slide_000.npz", "bundle/theta1.pt",
                "round_1/maps/slide_000.zarr/max_prob/c/0"]
# Values the code reads, for edits aimed at them (other edits land anywhere).
FOCUS = {
    "summary.json": (("selected_round",), ("operating_threshold",), ("mode",)),
    "SEL/stage2/summary.json": (("val", "scores", "slide_004"), ("val", "labels", "slide_004"),
                                ("train_curve",), ("val_loss",), ("train_loss",),
                                ("epoch_losses",), ("round",), ("val",)),
    "round_1/summary.json": (("final_loss",), ("losses",), ("pools", "sizes", "fine"),
                             ("map_stats",), ("collapsed",), ("round",)),
    "tiles/slide_000.json": (("slide_path",), ("mpp",), ("n_patches",), ("patch_size",),
                             ("key",), ("dimensions",), ("slide_mpp",)),
    "round_1/maps/slide_000.zarr/zarr.json": (("attributes", "size0"),
                                              ("attributes", "n_patches"),
                                              ("attributes", "version"),
                                              ("attributes", "key"), ("zarr_format",)),
}
ARRAYS = st.sampled_from([np.zeros(0), np.zeros((0, 2), np.int64), np.full((3, 2), -5),
                          np.full((2, 2), 2**40), np.array([[np.nan, 1.0]]), np.zeros((2, 3)),
                          np.array(["ab"]), np.zeros((2, 2), bool), np.zeros((1, 1, 1)),
                          np.full((28, 3), 10**6)])


@pytest.fixture(scope="module")
def template(trained) -> tuple[Path, int]:
    """The finished FAST run and its selected round."""
    summary = json.loads((trained.run_dir / "summary.json").read_text())
    return trained.run_dir, int(summary["selected_round"])


def _copy_or_link(src: str, dst: str) -> None:
    """Checkpoints are linked, not copied (mixsup replaces them, never writes into them; the
    damage below unlinks before it writes)."""
    if src.endswith(".pt"):
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


@pytest.fixture
def fresh(template, tmp_path) -> Iterator[Any]:
    """A new copy of the run for each example (hypothesis reuses a test's tmp_path); the
    previous example's copy is removed."""
    made: list[Path] = []

    def copy() -> Path:
        while made:
            shutil.rmtree(made.pop(), ignore_errors=True)
        made.append(Path(tempfile.mkdtemp(dir=tmp_path)))
        shutil.copytree(template[0], made[0] / "run", copy_function=_copy_or_link,
                        ignore=shutil.ignore_patterns("figures"))
        return made[0] / "run"

    yield copy
    while made:
        shutil.rmtree(made.pop(), ignore_errors=True)


@pytest.fixture
def no_training(monkeypatch):
    """θ1 and θ2 epochs and the E-step are replaced by ``Started``."""
    monkeypatch.setattr("mixsup.train.rounds.fit", started)
    monkeypatch.setattr("mixsup.train.stage2.fit", started)
    monkeypatch.setattr("mixsup.train.rounds.e_step", started)


def _damage(data: st.DataObject, run: Path, rel: str) -> None:
    """Damage ``run/rel`` as ``data`` draws."""
    import torch

    path = run / rel
    raw = path.read_bytes()
    path.unlink()  # a new file: the template's checkpoints are linked into the copy
    if path.suffix == ".yaml":
        doc = yaml.safe_load(raw)
        path.write_bytes(data.draw(st.one_of(edited(doc).map(dump), damaged_bytes(raw)),
                                   label=rel))
    elif path.suffix == ".json":
        path.write_bytes(data.draw(json_damage(raw, FOCUS.get(rel, ())), label=rel))
    elif path.suffix == ".pt" and data.draw(st.booleans(), label="edit weights"):
        state = torch.load(io.BytesIO(raw), weights_only=True)
        torch.save(data.draw(checkpoint_damage(state), label=rel), path)
    elif path.suffix in (".npy", ".npz") and data.draw(st.booleans(), label="other arrays"):
        array = data.draw(ARRAYS, label=rel)
        with open(path, "wb") as fh:
            if path.suffix == ".npy":
                np.save(fh, array)
            else:
                np.savez(fh, coords=array, tissue=array)
    else:
        path.write_bytes(data.draw(damaged_bytes(raw), label=rel))


def _file(data: st.DataObject, selected: int, files: list[str]) -> str:
    return data.draw(st.sampled_from(files), label="file").replace("SEL", f"round_{selected}")


def _finished_run_is_sound(run: Path) -> None:
    """A resume that exits 0 leaves a run whose bundle ``predict`` takes and whose summary
    holds a threshold in [0, 1]."""
    from mixsup.methods.bundle import read_bundle

    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["operating_threshold"] <= 1
    assert 0 <= read_bundle(run).threshold <= 1


@budget(14)
@given(data=st.data())
def test_fuzz_resume_of_a_damaged_run(shapes_data, template, fresh, no_training, capsys,
                                      data):
    run = fresh()
    rel = _file(data, template[1], JSON_FILES + BINARY_FILES + ["config.yaml"] * 2)
    _damage(data, run, rel)
    code, err = run_cli(capsys, ["-q", "train", str(shapes_data), "--out", str(run), *TINY,
                                 "--resume"])
    if code == 2:
        assert names(err, run, shapes_data), err
    elif code == 0:
        _finished_run_is_sound(run)


@budget(20)
@given(data=st.data())
def test_fuzz_rounds_on_a_damaged_run(shapes_data, template, fresh, capsys, data):
    run = fresh()
    rel = _file(data, template[1], [f for f in JSON_FILES + BINARY_FILES
                                    if "maps" in f or f == "summary.json"] + ["config.yaml"])
    _damage(data, run, rel)
    code, err = run_cli(capsys, ["-q", "rounds", str(run), "--data", str(shapes_data)])
    assert code != "started"
    if code == 2:
        assert names(err, run, shapes_data), err
    else:
        rows = json.loads((run / "map_quality.json").read_text())
        assert rows and all(isinstance(r, dict) for r in rows)


@budget(25)
@given(value=HOSTILE, key=st.sampled_from(["mpp", "n_patches", "patch_size", "slide_path",
                                           "key", "dimensions", "patch_size_level0"]))
def test_fuzz_a_stored_tiling_is_checked_or_made_again(shapes_data, template, tmp_path, value,
                                                       key):
    """The tiling a resume reuses: a damaged record is made again, never trusted."""
    from mixsup.config import load_config
    from mixsup.dataset.tiles import slide_set
    from mixsup.labels.table import load_dataset

    tiles = Path(tempfile.mkdtemp(dir=tmp_path)) / "tiles"
    shutil.copytree(template[0] / "tiles", tiles)
    meta = json.loads((tiles / "slide_000.json").read_text())
    meta[key] = value
    (tiles / "slide_000.json").write_bytes(dump(meta))
    cfg = load_config("tiny", overrides=FAST)
    got = slide_set(load_dataset(shapes_data), ("train",), cfg, tiles, False, False)
    i = [r.slide_id for r in got.records].index("slide_000")
    coords = got.tilesets[i].coords
    assert coords.ndim == 2 and coords.shape[1] == 2 and (coords >= 0).all()
    assert math.isfinite(got.tilesets[i].mpp) and got.tilesets[i].mpp > 0
    shutil.rmtree(tiles.parent)


# -- regressions the fuzzing found ----------------------------------------------------------------
@pytest.mark.parametrize("chunk", ["max_prob/c/0", "coords/c/0/0", "prob/c/0/0/0"])
@pytest.mark.parametrize("damage", [b"", b"\x28\xb5\x2f\xfd" + b"\x00" * 20, b"junk"],
                         ids=["empty", "zstd header", "junk"])
def test_a_map_chunk_that_cannot_be_decoded_names_its_store(shapes_data, fresh, capsys, chunk,
                                                            damage):
    """zstd raised RuntimeError on a damaged chunk: the catch-all, not the store's name."""
    run = fresh()
    store = run / "round_1" / "maps" / "slide_000.zarr"
    (store / chunk).unlink()
    (store / chunk).write_bytes(damage)
    code, err = run_cli(capsys, ["-q", "rounds", str(run), "--data", str(shapes_data)])
    assert code == 2 and str(store) in err and "map store" in err, err


def test_a_fill_value_past_its_dtype_names_the_store(shapes_data, fresh, capsys):
    """zarr raised OverflowError on an int64 array whose fill_value is 1e27."""
    run = fresh()
    store = run / "round_1" / "maps" / "slide_000.zarr"
    meta = json.loads((store / "coords" / "zarr.json").read_text())
    meta["fill_value"] = 2.2e27
    (store / "coords" / "zarr.json").write_text(json.dumps(meta))
    code, err = run_cli(capsys, ["-q", "rounds", str(run), "--data", str(shapes_data)])
    assert code == 2 and str(store) in err, err
