"""The baselines as modes of ``mixsup train``, on the tiny shapes dataset."""

from __future__ import annotations

import json

import numpy as np

from mixsup.config import MILConfig
from mixsup.train.api import train
from mixsup.train.mil import mil_selection
from tests.helpers import fast_config


def test_mil_selection_takes_top_k_per_slide():
    scores = {0: np.array([0.1, 0.9, 0.5]), 3: np.array([0.7, 0.2])}
    coords = {0: np.array([[0, 0], [10, 0], [20, 0]]), 3: np.array([[5, 5], [6, 6]])}
    rows = mil_selection(scores, coords, {0: 1, 3: 0}, k=2)
    assert rows.tolist() == [[0, 10, 0, 1], [0, 20, 0, 1], [3, 5, 5, 0], [3, 6, 6, 0]]
    assert mil_selection(scores, coords, {0: 1}, k=1).tolist() == [[0, 10, 0, 1]]


def test_image_mode_trains_and_predicts(shapes_data, tmp_path):
    from mixsup.cli import main

    cfg = fast_config().model_copy(update={"mil": MILConfig(
        encoder="mobilenetv3_small_100", epochs=2, batch_size=8, lr=1e-3)})
    result = train(shapes_data, tmp_path / "run", cfg, mode="image", progress=False)
    assert len(result.summary.mil_epoch_losses) == 2
    events = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e["event"] == "mil_epoch"] == [1, 2]
    bundle = json.loads((tmp_path / "run" / "bundle" / "bundle.json").read_text())
    assert bundle["mode"] == "image" and bundle["theta2"] is None
    assert main(["-q", "predict", str(tmp_path / "run"), "--data", str(shapes_data),
                 "--split", "test", "--out", str(tmp_path / "pred")]) == 0
    assert (tmp_path / "pred" / "predictions.csv").read_text().count("\n") == 2
    _viewer_shows(tmp_path / "pred", shapes_data)


def _viewer_shows(pred, data, mode="image"):
    """``mixsup view`` on a prediction folder of a patch-model mode: slide JSON, DZI and tiles
    of both layers (the browser test runs on a mixed-mode folder)."""
    from mixsup.view.catalog import load_catalog
    from mixsup.view.viewer import Viewer

    catalog = load_catalog(pred, data)
    assert catalog.mode == mode
    viewer = Viewer(catalog)
    try:
        for entry in catalog.slides:
            body, kind, _ = viewer.route(f"/api/slides/{entry.slide_id}")
            page = json.loads(body)
            assert kind == "application/json" and len(page["topk"]) == len(entry.topk) > 0
            for layer, fmt in (("slide", "jpeg"), ("overlay", "png")):
                dzi, _, _ = viewer.route(f"/dzi/{entry.slide_id}/{layer}.dzi")
                assert b"Image" in dzi
                tile, kind, _ = viewer.route(f"/dzi/{entry.slide_id}/{layer}_files/0/0_0.{fmt}")
                assert kind == f"image/{fmt}" and len(tile) > 0
    finally:
        viewer.close()


def test_pixel_mode_passes_through_mixed_round_zero(shapes_data, tmp_path, trained):
    """Pixel mode trains its rounds on the pixel labels alone with mixed's steps and seeds:
    its round 0 is mixed's round 0 (identical weights), so mixed - pixel measures only what the
    EM rounds add. Selection runs among rounds 1..N, and round 0 needs no E-step there."""
    import torch

    from mixsup.storage.artefacts import load_checkpoint

    result = train(shapes_data, tmp_path / "run", fast_config(), mode="pixel", progress=False)
    rows = result.summary.rounds
    assert [r.round for r in rows] == [0, 1, 2]
    assert result.summary.selected_round in (1, 2)
    assert all(r.pools.pseudo_positive == r.pools.hard_negative == 0 for r in rows)
    mixed = trained.summary.rounds
    assert [r.optimiser_steps for r in rows] == [r.optimiser_steps for r in mixed]
    assert rows[0].final_loss == mixed[0].final_loss
    ours = load_checkpoint(tmp_path / "run" / "round_0" / "model.pt")["model"]
    theirs = load_checkpoint(trained.run_dir / "round_0" / "model.pt")["model"]
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not (tmp_path / "run" / "round_0" / "maps").exists()
    assert not (tmp_path / "run" / "round_0" / "stage2").exists()
    assert (trained.run_dir / "round_0" / "maps").is_dir()  # mixed's round 1 pools need it


def test_image_mode_frozen_batchnorm_keeps_the_initial_statistics(shapes_data, tmp_path):
    """``mil.batchnorm: frozen``: training and the end-of-fit recalibration leave every
    BatchNorm's running statistics as built (here the from-scratch 0 and 1)."""
    import torch

    from mixsup.storage.artefacts import load_checkpoint
    from mixsup.train.mil import mil_model_path

    cfg = fast_config().model_copy(update={"mil": MILConfig(
        encoder="mobilenetv3_small_100", epochs=1, batch_size=8, lr=1e-3,
        batchnorm="frozen")})
    train(shapes_data, tmp_path / "run", cfg, mode="image", progress=False)
    state = load_checkpoint(mil_model_path(tmp_path / "run"), torch.device("cpu"))["model"]
    means = [v for k, v in state.items() if k.endswith("running_mean")]
    variances = [v for k, v in state.items() if k.endswith("running_var")]
    assert means and all(torch.all(v == 0) for v in means)
    assert all(torch.all(v == 1) for v in variances)
