"""`mixsup rounds`: θ1's maps per round against the generator's true outlines."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mixsup.errors import MixsupError
from mixsup.evaluate.map_quality import (
    RoundQuality,
    coverage_checks,
    round_map_quality,
    run_selected_round,
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
    out = capsys.readouterr().out
    assert "recall" in out
    selected = trained.summary.selected_round
    assert [ln.split(":")[0] for ln in out.splitlines() if "coverage mechanism" in ln] == [
        "val", "test"] and f"selected round {selected}:" in out


def _quality(split: str, rnd: int, recall: float, negatives: float) -> RoundQuality:
    return RoundQuality(rnd, 0.0, 0.0, negatives, 0.0, 0.5, 8, split, recall_positive_slides=recall)


def test_coverage_is_shown_only_when_recall_rises_and_negatives_do_not():
    rows = [_quality("val", 0, 0.20, 0.010), _quality("val", 1, 0.10, 0.002),
            _quality("val", 2, 0.25, 0.010),
            _quality("test", 0, 0.20, 0.010), _quality("test", 2, 0.15, 0.004)]
    val, test = coverage_checks(rows, 2)
    assert (val.recall, val.negative_fraction) == ((0.20, 0.25), (0.010, 0.010))
    assert val.recall_rose and val.negatives_not_higher and val.line().endswith("is shown")
    assert not test.recall_rose and test.negatives_not_higher
    assert test.line().endswith("not shown: recall did not rise")
    worse = coverage_checks([_quality("test", 0, 0.1, 0.001), _quality("test", 1, 0.2, 0.003)], 1)
    assert worse[0].line().endswith("not shown: negatives' tumour rose")
    assert coverage_checks(rows, 0) == [] and coverage_checks(rows, 1)[0].split == "val"


def test_an_unreadable_run_summary_is_one_clear_error(tmp_path):
    assert run_selected_round(tmp_path) is None
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(MixsupError, match="invalid JSON in the run summary"):
        run_selected_round(tmp_path)
    (tmp_path / "summary.json").write_text('{"selected_round": 2}')
    assert run_selected_round(tmp_path) == 2
