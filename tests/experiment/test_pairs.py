"""The experiment's paired table, from prediction folders written by hand."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mixsup.experiment.pairs import (
    paired_markdown,
    paired_table,
    pairs,
    theta1_scores,
    write_paired,
)

IDS = [f"s{i}" for i in range(8)]
LABELS = dict(zip(IDS, [1, 1, 1, 1, 0, 0, 0, 0], strict=True))


def _pred(run, slide_scores, topk_maxima):
    pred = run / "pred"
    pred.mkdir(parents=True)
    with open(pred / "predictions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide_id", "probability", "prediction"])
        w.writerows([sid, p, int(p >= 0.5)] for sid, p in slide_scores.items())
    with open(pred / "topk.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide_id", "rank", "x", "y", "size_level0", "max_pixel_prob",
                    "patch_prob"])
        for sid, maxima in topk_maxima.items():
            w.writerows([sid, r + 1, 0, 0, 128.0, m, ""] for r, m in enumerate(maxima))


def test_paired_table_pairs_seeds_and_both_scores(tmp_path):
    rng = np.random.default_rng(0)
    runs: dict[str, dict[int, object]] = {"mixed": {}, "pixel": {}}
    expected = []
    for mode in runs:
        for seed in (0, 1):
            run = tmp_path / f"{mode}{seed}"
            slide = dict(zip(IDS, rng.random(8), strict=True))
            topk = {sid: rng.random(2) for sid in IDS[:-1]}  # s7: no tissue -> 0
            _pred(run, slide, topk)
            runs[mode][seed] = run / "pred"
            expected.append(roc_auc_score([LABELS[i] for i in IDS], [slide[i] for i in IDS]))
    rows = paired_table(runs, LABELS, n_boot=200)
    assert {(r.score, r.diff.metric) for r in rows} == {
        (s, m) for s in ("slide", "theta1") for m in ("auc", "specificity_at_full_sensitivity")}
    auc = next(r.diff for r in rows if r.score == "slide" and r.diff.metric == "auc")
    assert (auc.a, auc.b, auc.n_slides) == ("mixed", "pixel", 8)
    assert auc.per_seed == pytest.approx([expected[0] - expected[2], expected[1] - expected[3]])
    theta1 = theta1_scores(runs["mixed"][0])
    assert theta1["s7"] == 0.0 and 0 <= theta1["s0"] <= 1
    write_paired(tmp_path / "paired.csv", rows)
    assert len((tmp_path / "paired.csv").read_text().splitlines()) == 1 + 4
    md = "\n".join(paired_markdown(rows))
    assert "mixed − pixel" in md and "θ1 alone" in md and "[" in md


def test_an_em_switch_pairs_with_the_plain_runs_of_every_mode():
    variants = ["pixel", "mixed", "mixed teacher=average", "mixed pixel-slides=3",
                "pixel pixel-slides=3"]
    got = pairs(variants, frozenset({"teacher"}))
    assert got == [("mixed", "pixel"), ("mixed teacher=average", "mixed"),
                   ("mixed teacher=average", "pixel"),
                   ("mixed pixel-slides=3", "pixel pixel-slides=3"),
                   ("mixed pixel-slides=3", "mixed"), ("pixel pixel-slides=3", "pixel")]
    # without the switch declared, a variant pairs with its own mode's base run only
    assert ("mixed teacher=average", "pixel") not in pairs(variants)
    assert ("mixed teacher=average", "mixed") in pairs(variants)


def test_attention_modes_pair_on_the_slide_score_only(tmp_path):
    """abmil's topk.csv ranks by attention, no probability: no θ1-alone pair with it."""
    rng = np.random.default_rng(1)
    runs: dict[str, dict[int, object]] = {"mixed": {}, "abmil": {}}
    for mode in runs:
        run = tmp_path / mode
        _pred(run, dict(zip(IDS, rng.random(8), strict=True)),
              {sid: rng.random(2) for sid in IDS})
        runs[mode][0] = run / "pred"
    rows = paired_table(runs, LABELS, n_boot=50)
    assert {r.score for r in rows} == {"slide"} and rows[0].diff.a == "mixed"


def test_stage2_rows_pair_a_runs_theta2_with_its_own_theta1(tmp_path):
    """θ2 ranks perfectly, θ1's top-K mean perfectly wrongly: Δ AUC is exactly +1 per seed."""
    from mixsup.experiment.pairs import stage2_table

    runs: dict[str, dict[int, object]] = {"mixed": {}}
    for seed in (0, 1):
        run = tmp_path / f"m{seed}"
        slide = {sid: 0.9 if LABELS[sid] else 0.1 for sid in IDS}
        topk = {sid: [0.1, 0.1] if LABELS[sid] else [0.9, 0.9] for sid in IDS}
        _pred(run, slide, topk)
        runs["mixed"][seed] = run / "pred"
    rows = stage2_table(runs, LABELS, n_boot=100)
    auc = next(r.diff for r in rows if r.diff.metric == "auc")
    assert (auc.a, auc.b) == ("mixed θ2", "mixed θ1 alone") and auc.per_seed == (1.0, 1.0)
    md = "\n".join(paired_markdown(rows))
    assert "keep θ1's lead" in md and "| mixed | +1.000" in md


def test_a_mode_without_theta2_gets_no_stage2_row(tmp_path):
    from mixsup.experiment.pairs import stage2_table

    runs: dict[str, dict[int, object]] = {"image": {}}
    _pred(tmp_path / "i0", {sid: 0.5 for sid in IDS}, {sid: [0.4] for sid in IDS})
    runs["image"][0] = tmp_path / "i0" / "pred"
    assert stage2_table(runs, LABELS, n_boot=10) == []
