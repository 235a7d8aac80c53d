"""``--mode abmil`` on TRIDENT's patch features (``abmil.features_format=trident``): trained
and predicted from a folder of ``<slide_id>.h5`` files as TRIDENT writes them, with no encoder
of mixsup's; the files' values reach the head, and the maps lie on the files' patches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mixsup.cli import main
from mixsup.labels.table import load_dataset
from tests.helpers import FAST
from tests.inference.test_trident_features import trident_file

TINY = ["--preset", "tiny", *(a for s in FAST for a in ("--set", s))]
# 64-px patches at 10x on the shapes' 20x scans: 128 level-0 pixels a side
ATTRS = {"patch_size": 64, "patch_size_level0": 128, "level0_magnification": 20,
         "target_magnification": 10, "overlap": 0, "level0_width": 768, "level0_height": 768}
CORNERS = np.array([(128 * (i % 4), 128 * (i // 4)) for i in range(16)], np.int64)


def trident_folder(data: Path, out: Path, scale: float = 1.0) -> Path:
    """TRIDENT's features_<encoder>/ for every slide of ``data``: 16 patches of 12 values, a
    positive slide's first three shifted."""
    rng = np.random.default_rng(0)
    out.mkdir()
    for rec in load_dataset(data).slides:
        feats = rng.normal(size=(16, 12)).astype(np.float32)
        if rec.label == 1:
            feats[:3, 0] += 4.0
        trident_file(out / f"{rec.slide_id}.h5", feats * scale, CORNERS, ATTRS)
    return out


def _train(data: Path, run: Path, feats: Path, *extra: str) -> int:
    return main(["-q", "train", str(data), "--mode", "abmil", "--out", str(run), *TINY,
                 "--set", "abmil.features_format=trident", "--set", f"abmil.features={feats}",
                 "--set", "abmil.epochs=2", *extra])


def _probabilities(pred: Path) -> dict[str, float]:
    rows = (pred / "predictions.csv").read_text().splitlines()[1:]
    return {r.split(",")[0]: float(r.split(",")[1]) for r in rows}


def test_abmil_trains_and_predicts_on_trident_features(shapes_data, tmp_path, capsys):
    from mixsup.inference.map_store import read_maps
    from mixsup.inference.trident_features import open_trident
    from mixsup.methods.bundle import load_bundle

    feats = trident_folder(shapes_data, tmp_path / "features_uni_v1")
    run = tmp_path / "run"
    assert _train(shapes_data, run, feats) == 0
    assert not (run / "features").exists() and sorted(p.name for p in feats.iterdir()) == [
        f"slide_00{i}.h5" for i in range(6)]  # read only
    bundle = json.loads((run / "bundle" / "bundle.json").read_text())
    assert bundle["features_fingerprint"] == {"format": "trident", "dim": 12,
                                              "encoder": "uni_v1"}
    assert not any(k.startswith("encoder.") for k in torch.load(
        run / "bundle" / "theta1.pt", weights_only=True)["model"])

    pred = tmp_path / "pred"  # the training's folder holds the new slides' files too
    assert main(["-q", "predict", str(run), "--data", str(shapes_data), "--out", str(pred)]) == 0
    probs = _probabilities(pred)
    assert len(probs) == 6
    head = load_bundle(run).theta1.head.eval()
    for sid, p in probs.items():
        with torch.inference_mode():
            logit, weights, _ = head(torch.from_numpy(open_trident(feats / f"{sid}.h5").features))
        assert p == pytest.approx(float(torch.sigmoid(logit)), abs=1e-5)
        maps = read_maps(pred / "maps" / f"{sid}.zarr")
        assert np.array_equal(maps.coords, CORNERS) and maps.size0 == 128.0
        assert np.allclose(maps.max_prob, (weights / weights.max()).numpy(), atol=1e-5)
        record = json.loads((pred / "slides" / f"{sid}.json").read_text())
        assert record["n_patches"] == 16 and record["topk"][0]["size"] == 128.0

    # other values in the same files: other probabilities (the values reach the head)
    scaled = trident_folder(shapes_data, tmp_path / "scaled", scale=3.0)
    again = tmp_path / "again"
    assert main(["-q", "predict", str(run), "--data", str(shapes_data), "--features",
                 str(scaled), "--out", str(again)]) == 0
    other = _probabilities(again)
    assert all(abs(other[s] - probs[s]) > 1e-4 for s in probs)

    # a slide without its file is skipped, naming the file
    (scaled / "slide_005.h5").unlink()
    capsys.readouterr()
    assert main(["-q", "predict", str(run), "--data", str(shapes_data), "--split", "test",
                 "--features", str(scaled), "--out", str(tmp_path / "none")]) == 1
    out = capsys.readouterr().out
    assert f"{scaled / 'slide_005.h5'}: no TRIDENT features for this slide" in out


def test_trident_settings_are_checked_before_the_run_folder(shapes_data, tmp_path, capsys):
    """No folder named, a folder that is not there, or a TRIDENT folder read as mixsup's:
    one error each, and no run folder (or features.json in TRIDENT's folder) left behind."""
    run = tmp_path / "run"
    assert main(["-q", "train", str(shapes_data), "--mode", "abmil", "--out", str(run), *TINY,
                 "--set", "abmil.features_format=trident"]) == 2
    assert "needs abmil.features" in capsys.readouterr().err
    assert _train(shapes_data, run, tmp_path / "nowhere") == 2
    assert "TRIDENT feature folder is not there" in capsys.readouterr().err
    assert not run.exists()
    feats = trident_folder(shapes_data, tmp_path / "features_uni_v1")
    assert main(["-q", "train", str(shapes_data), "--mode", "abmil", "--out", str(run), *TINY,
                 "--set", f"abmil.features={feats}", "--set", "abmil.epochs=1"]) == 2
    assert "abmil.features_format=trident" in capsys.readouterr().err
    assert not (feats / "features.json").exists() and not run.exists()
    train_id = next(line.split(",")[0] for line in (shapes_data / "slides.csv").read_text()
                    .splitlines() if line.split(",")[3:4] == ["train"])
    (feats / f"{train_id}.h5").write_bytes(b"not hdf5")  # a training slide's file is damaged
    assert _train(shapes_data, run, feats) == 2
    assert f"{train_id}.h5" in capsys.readouterr().err
    assert not run.exists()


def test_an_experiment_leaves_a_trident_folder_as_it_is(tmp_path):
    """``mixsup experiment`` fills shared mixsup feature folders before its runs; TRIDENT's
    folder is made by TRIDENT and only read."""
    from mixsup.config import load_config
    from mixsup.experiment.core import precompute_features, shared_features
    from mixsup.methods.registry import MODES

    feats = tmp_path / "features_uni_v1"
    feats.mkdir()
    cfg = shared_features(load_config("tiny", overrides=[
        "abmil.features_format=trident", f"abmil.features={feats}"]), "abmil", tmp_path)
    assert cfg.abmil.features == str(feats)
    precompute_features(tmp_path / "no-data", [(MODES["abmil"], cfg)], progress=False)
    assert not any(feats.iterdir())
