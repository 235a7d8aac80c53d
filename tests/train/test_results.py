"""Run-folder records: JSON round trips, refusal of unknown keys, mixsup 0.1.0 folders."""

from __future__ import annotations

import json

import pytest

from mixsup.storage.records import from_json, to_json
from mixsup.train.results import (
    MapStats,
    MILSummary,
    PoolSizes,
    PoolStats,
    RoundSummary,
    Stage2Summary,
    ValScores,
)

ROUND = RoundSummary(1, 2, [0.5, 0.25], 0.25, PoolStats(PoolSizes(10, 3, 7), 2, 1),
                     MapStats(0.1, 0.02, 30), 1.5, 2.5, 100.0)


def test_round_trip_keeps_nan_and_int_keys():
    s2 = Stage2Summary(0, [], float("nan"), 0.3, 4, None, ValScores({"a": 0.5}, {"a": 1}))
    back = from_json(Stage2Summary, json.loads(json.dumps(to_json(s2))))
    assert back.train_curve != back.train_curve and back.val == s2.val  # NaN survives
    assert from_json(RoundSummary, json.loads(json.dumps(to_json(ROUND)))) == ROUND


def test_unknown_or_missing_keys_are_refused():
    data = to_json(ROUND)
    data["map_stats"]["positive_patches_above_treshold"] = 3  # misspelt
    with pytest.raises(ValueError, match="positive_patches_above_treshold"):
        from_json(RoundSummary, data)
    data = to_json(ROUND)
    del data["losses"]
    with pytest.raises(ValueError, match="losses"):
        from_json(RoundSummary, data)


def test_summaries_of_mixsup_0_1_0_run_folders_still_read(tmp_path):
    old_round = to_json(ROUND)
    pools = old_round["pools"]
    pools["threshold_kept_slides"] = {"positive_slides": pools.pop("positive_slides_kept"),
                                      "negative_slides": pools.pop("negative_slides_kept")}
    (tmp_path / "round.json").write_text(json.dumps(old_round))
    assert RoundSummary.read(tmp_path / "round.json") == ROUND
    old_s2 = {"round": 0, "epoch_losses": [0.4], "train_curve": 0.4, "train_loss": 0.3,
              "train_slides": 4, "val_loss": 0.2, "val_scores": {"v": 0.9},
              "val_labels": {"v": 1}}
    (tmp_path / "s2.json").write_text(json.dumps(old_s2))
    assert Stage2Summary.read(tmp_path / "s2.json").val == ValScores({"v": 0.9}, {"v": 1})
    (tmp_path / "mil.json").write_text(json.dumps({"epoch_losses": [0.1], "val_scores": {},
                                                   "val_labels": {}}))
    assert MILSummary.read(tmp_path / "mil.json").val == ValScores({}, {})
