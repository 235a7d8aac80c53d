"""`mixsup rounds`: θ1's maps per round against the generator's true outlines."""

from __future__ import annotations

import json
import math

import numpy as np

from mixsup.evaluate.map_quality import (
    round_map_quality,
    share_reaching,
    topk_hit_rate,
    write_quality,
)


def test_topk_hit_rate_counts_top_patches_touching_tumour():
    masks = np.zeros((5, 4, 4), bool)
    masks[1, 0, 0] = True  # one tumour pixel is enough
    masks[3] = True
    max_prob = np.array([0.9, 0.8, 0.1, 0.7, 0.2])
    assert topk_hit_rate(masks, max_prob, 2) == 0.5  # patches 0 and 1
    assert topk_hit_rate(masks, max_prob, 3) == 2 / 3  # 0, 1, 3
    assert topk_hit_rate(masks, max_prob, 10) == 2 / 5  # every patch
    assert math.isnan(topk_hit_rate(masks[:0], max_prob[:0], 2))


def test_share_reaching_t_is_inclusive():
    assert share_reaching([0.39, 0.4, 0.41, 0.1], 0.4) == 0.5
    assert share_reaching([0.2], 0.4) == 0.0
    assert math.isnan(share_reaching([], 0.4))


def test_every_round_is_measured_with_the_run_top_k(shapes_data, trained, tmp_path):
    rows = round_map_quality(trained.run_dir, shapes_data)
    assert [r.round for r in rows] == [0, 1, 2]
    for r in rows:
        assert r.top_k == 2  # the FAST config's stage2.top_k, read from the run's config.yaml
        assert 0 <= r.iou_positive_slides <= 1 and 0 <= r.topk_hit_rate <= 1
        assert 0 <= r.topk_slide_auc <= 1
        assert 0 <= r.negative_slides_positive_fraction <= 1
        assert r.threshold == 0.4  # the run's stage1.threshold
        assert 0 <= r.positive_slides_reaching_t <= 1
    out = tmp_path / "q.json"
    write_quality(out, rows)
    assert json.loads(out.read_text())[0]["round"] == 0


def test_rounds_on_heldout_slides_report_recall_and_precision(shapes_data, trained, capsys):
    """`mixsup rounds --split val,test`: each round's θ1 scored on slides it never saw, against
    the answer key that `mixsup synth` wrote beside (not inside) the dataset."""
    from mixsup.cli import main
    from mixsup.synth.layout import answer_key

    assert answer_key(shapes_data).is_dir() and not (shapes_data / "truth").exists()
    assert main(["-q", "rounds", str(trained.run_dir), "--data", str(shapes_data),
                 "--split", "val,test"]) == 0
    rows = json.loads((trained.run_dir / "map_quality.json").read_text())
    assert [(r["split"], r["round"]) for r in rows] == [
        (s, r) for s in ("val", "test") for r in (0, 1, 2)]
    for r in rows:
        assert r["slides"] >= 1
        for key in ("recall_positive_slides", "precision", "negative_slides_reaching_t"):
            assert math.isnan(r[key]) or 0 <= r[key] <= 1
    assert (trained.run_dir / "round_1" / "maps_test").is_dir()
    assert "recall" in capsys.readouterr().out
