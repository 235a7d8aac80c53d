"""``mixsup features`` and ``--mode abmil``: the attention head's arithmetic, the balanced
epochs, the feature cache (one encoder per folder, reused, resumed) and the mode end to end
through train, predict and the viewer on the shapes dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mixsup.config import ABMILConfig
from mixsup.models.abmil import GatedAttentionMIL, slide_logit
from mixsup.train.abmil import balanced_order
from tests.helpers import FAST

TINY = ["--preset", "tiny", *(a for s in FAST for a in ("--set", s))]


def test_slide_logit_is_the_classifier_of_the_attention_pooled_embedding():
    """Ilse et al.'s c·(Σ a_i h_i) + b, computed as Σ a_i (c·h_i + b): the per-patch form that
    prediction uses must give the same logit."""
    torch.manual_seed(0)
    head = GatedAttentionMIL(12, ABMILConfig(embed_dim=8, attention_dim=4, dropout=0.0)).eval()
    feats = torch.randn(30, 12)
    logit, weights, h = head(feats)
    pooled = (weights[:, None] * h).sum(0)
    assert torch.allclose(logit, head.classifier(pooled)[0], atol=1e-6)
    assert torch.allclose(weights.sum(), torch.tensor(1.0))
    a, s, _ = head.patch_logits(feats)
    assert torch.allclose(slide_logit(a, s), logit, atol=1e-6)


def test_instance_loss_trains_only_the_true_class_classifier():
    torch.manual_seed(0)
    head = GatedAttentionMIL(6, ABMILConfig(embed_dim=5, attention_dim=3, dropout=0.0))
    _, weights, h = head(torch.randn(10, 6))
    loss = head.instance_loss(h, weights, label=1, k=3)
    loss.backward()
    assert head.instance[1].weight.grad is not None and head.instance[1].weight.grad.abs().sum()
    assert head.instance[0].weight.grad is None
    one = head.instance_loss(h[:1], weights[:1], label=0, k=3)  # too few patches for k
    assert float(one.detach()) == 0.0


def test_balanced_order_draws_both_classes_equally():
    labels = [1, 0, 0, 0, 0, 1, 0]
    order = balanced_order(labels, np.random.default_rng(0))
    pos = [i for i in order if labels[i] == 1]
    neg = [i for i in order if labels[i] == 0]
    assert len(pos) == len(neg) == 5
    assert sorted(neg) == [1, 2, 3, 4, 6]  # the larger class: each slide once
    assert {pos.count(0), pos.count(5)} == {2, 3}  # the smaller repeated as evenly as possible


def _bags(n: int, rng: np.random.Generator, witnesses: int = 3):
    """Bags of 40 random 16-d instances; a positive bag holds ``witnesses`` shifted ones."""
    bags, labels = [], []
    for i in range(n):
        x = rng.normal(size=(40, 16)).astype(np.float32)
        if i % 2:
            x[:witnesses, 0] += 4.0
        bags.append(torch.from_numpy(x))
        labels.append(i % 2)
    return bags, labels


def test_the_head_learns_a_few_witnesses_per_positive_bag():
    """The training loop can learn: 3 of 40 instances carry the signal, as a few tumour
    patches in a slide; held-out bags are ranked almost perfectly."""
    from sklearn.metrics import roc_auc_score

    from mixsup.train.abmil import fit_head, slide_probabilities

    rng = np.random.default_rng(0)
    train, ys = _bags(40, rng)
    test, ty = _bags(40, rng)
    cfg = ABMILConfig(embed_dim=32, attention_dim=16, epochs=15, lr=1e-3, dropout=0.0)
    fitted = fit_head(train, ys, cfg, seed=0, val_bags=test[:10], val_labels=ty[:10])
    assert fitted.losses[-1] < 0.2 < fitted.losses[0]
    assert roc_auc_score(ty[10:], slide_probabilities(fitted.head, test[10:])) > 0.95
    _, weights, _ = fitted.head(test[1])
    assert set(torch.topk(weights, 3).indices.tolist()) == {0, 1, 2}  # attention finds them
    assert 1 <= fitted.chosen_epoch <= 15 and len(fitted.val_losses) == 15


def test_a_resumed_head_equals_an_uninterrupted_one(tmp_path):
    """Killed after epoch 2 of 4 and resumed: the same weights as 4 epochs in one go (the
    optimiser, the dropout's random state and the best epoch come back)."""
    from mixsup.train.abmil import fit_head

    rng = np.random.default_rng(1)
    bags, ys = _bags(12, rng)
    cfg = ABMILConfig(embed_dim=8, attention_dim=4, epochs=4, lr=1e-3)
    whole = fit_head(bags, ys, cfg, seed=3, val_bags=bags[:4], val_labels=ys[:4])
    ckpt = tmp_path / "last.pt"
    fit_head(bags, ys, cfg.model_copy(update={"epochs": 2}), seed=3, val_bags=bags[:4],
             val_labels=ys[:4], checkpoint=ckpt)
    resumed = fit_head(bags, ys, cfg, seed=3, val_bags=bags[:4], val_labels=ys[:4],
                       checkpoint=ckpt)
    assert resumed.losses == whole.losses and resumed.val_losses == whole.val_losses
    assert resumed.chosen_epoch == whole.chosen_epoch
    for k, v in whole.head.state_dict().items():
        assert torch.equal(v, resumed.head.state_dict()[k]), k


def test_a_published_store_is_kept_and_bad_weights_are_named(tmp_path, shapes_data):
    """Two runs sharing a folder: the second writer of a slide keeps the first one's store.
    A missing weights file is one clear error, before any tiling."""
    from mixsup.cli import main
    from mixsup.inference.features import open_features, write_store

    path = tmp_path / "s.zarr"
    coords = np.zeros((2, 2), np.int64)
    write_store(path, np.ones((2, 3), np.float32), coords, {"key": "k"})
    write_store(path, np.zeros((2, 3), np.float32), coords, {"key": "k"})
    assert open_features(path, "k").features.sum() == 6
    write_store(path, np.zeros((2, 3), np.float32), coords, {"key": "other"})  # stale: replaced
    assert open_features(path, "other").features.sum() == 0
    out = tmp_path / "feats"
    assert main(["-q", "features", str(shapes_data), "--out", str(out), *TINY,
                 "--weights", str(tmp_path / "missing.safetensors")]) == 2
    assert not out.exists()


def test_features_then_abmil_trains_predicts_and_shows(shapes_data, tmp_path):
    from mixsup.cli import main

    feats = tmp_path / "feats"
    assert main(["-q", "features", str(shapes_data), "--out", str(feats), *TINY]) == 0
    stores = sorted(feats.glob("*.zarr"))
    assert len(stores) == 6
    index = json.loads((feats / "features.json").read_text())
    assert index["fingerprint"]["encoder"]["encoder"] == "mobilenetv3_small_100"
    before = {p.name: p.stat().st_mtime_ns for p in stores}
    # another encoder into the same folder is refused: features are never mixed
    assert main(["-q", "features", str(shapes_data), "--out", str(feats), *TINY,
                 "--encoder", "resnet18"]) == 2
    # a store lost (a killed run) is the only one recomputed
    import shutil

    shutil.rmtree(stores[0])
    assert main(["-q", "features", str(shapes_data), "--out", str(feats), *TINY]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in feats.glob("*.zarr")}
    assert [n for n in after if after[n] != before[n]] == [stores[0].name]

    run = tmp_path / "run"
    assert main(["-q", "train", str(shapes_data), "--mode", "abmil", "--out", str(run), *TINY,
                 "--set", f"abmil.features={feats}", "--set", "abmil.epochs=3"]) == 0
    assert not (run / "features").exists()  # the cache was used
    assert {p.name: p.stat().st_mtime_ns for p in feats.glob("*.zarr")} == after
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mode"] == "abmil" and len(summary["mil_epoch_losses"]) == 3
    bundle = json.loads((run / "bundle" / "bundle.json").read_text())
    assert bundle["mode"] == "abmil" and bundle["theta2"] is None
    val = bundle["abmil_val_losses"]  # the head kept is the epoch of lowest val loss
    assert len(val) == 3 and bundle["selected_epoch"] == 1 + int(np.argmin(val))

    pred = tmp_path / "pred"
    assert main(["-q", "predict", str(run), "--data", str(shapes_data), "--out", str(pred)]) == 0
    rows = (pred / "predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == 6
    _attention_matches_the_features(run, pred, feats)
    from tests.train.test_modes import _viewer_shows

    _viewer_shows(pred, shapes_data, mode="abmil")
    # a folder named at predict time must hold features of the bundle's encoder and tiling
    assert main(["-q", "predict", str(run), "--data", str(shapes_data), "--split", "test",
                 "--features", str(tmp_path), "--out", str(tmp_path / "elsewhere")]) == 2
    # the training's feature folder gone (another machine): prediction computes its own
    shutil.move(feats, tmp_path / "moved")
    again = tmp_path / "again"
    assert main(["-q", "predict", str(run), "--data", str(shapes_data), "--split", "test",
                 "--out", str(again)]) == 0
    assert len(list((again / "features").glob("*.zarr"))) == 1
    first = dict(r.split(",")[:2] for r in rows)
    for r in (again / "predictions.csv").read_text().splitlines()[1:]:
        sid, prob = r.split(",")[:2]
        assert float(prob) == pytest.approx(float(first[sid]), abs=1e-5)


def _attention_matches_the_features(run, pred, feats):
    """Each slide's probability is the head on its cached features (Ilse's pooled form), and
    its stored map is the attention over the slide's highest."""
    from mixsup.inference.features import open_features
    from mixsup.inference.map_store import open_maps
    from mixsup.methods.bundle import load_bundle

    head = load_bundle(run).theta1.head.eval()
    for row in json.loads((pred / "predict.json").read_text())["skipped"] or {}:
        raise AssertionError(f"skipped {row}")
    for path in sorted((pred / "slides").glob("*.json")):
        slide = json.loads(path.read_text())
        f = open_features(feats / f"{slide['slide_id']}.zarr")
        with torch.inference_mode():
            _, weights, h = head(torch.from_numpy(f.features.astype(np.float32)))
            expected = float(torch.sigmoid(head.classifier((weights[:, None] * h).sum(0))[0]))
        assert slide["probability"] == pytest.approx(expected, abs=1e-5)
        maps = open_maps(pred / "maps" / f"{slide['slide_id']}.zarr")
        rel = (weights / weights.max()).numpy()
        assert np.allclose(maps.max_prob, rel, atol=1e-5)
        assert slide["topk"][0]["max_pixel_prob"] == pytest.approx(1.0)


def test_experiment_runs_share_one_feature_folder_per_encoder(tmp_path):
    from mixsup.config import load_config
    from mixsup.experiment.core import shared_features

    a = shared_features(load_config("tiny", overrides=["seed=0"]), "abmil", tmp_path)
    b = shared_features(load_config("tiny", overrides=["seed=1"]), "abmil", tmp_path)
    c = shared_features(load_config("tiny", overrides=["abmil.encoder=resnet18"]), "abmil",
                        tmp_path)
    assert a.abmil.features == b.abmil.features != c.abmil.features
    assert a.abmil.features.startswith(str((tmp_path / "features").resolve()))
    assert shared_features(load_config("tiny"), "mixed", tmp_path).abmil.features is None
