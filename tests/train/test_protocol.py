"""``protocol=paper`` turns off every departure from the paper's method."""

from __future__ import annotations

import pytest

from mixsup.config import load_config
from mixsup.config.protocols import PAPER


def _get(cfg, key):
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize("preset", ["paper", "small", "tiny"])
def test_protocol_paper_forces_every_row_whatever_the_preset(preset):
    mixsup = load_config(preset)
    paper = load_config(preset, overrides=["protocol=paper", "stage1.keep_negatives=true"])
    assert paper.protocol == "paper"
    for key, value in PAPER.items():
        got = _get(paper, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key
    changed = [k for k in PAPER if _get(paper, k) != _get(mixsup, k)]
    assert changed  # every preset departs from the paper somewhere


def test_the_small_preset_departs_in_the_documented_ways():
    small = load_config("small")
    departures = {k for k, v in PAPER.items()
                  if (list(_get(small, k)) if k == "stage1.ratio" else _get(small, k)) != v}
    assert {"stage1.ratio", "stage1.keep_negatives", "stage2.init", "stage2.select_by",
            "stage2.select_tolerance", "stage2.tie_break", "training.stain_sigma",
            "training.lr_schedule"} <= departures


def test_what_the_paper_does_not_state_is_not_in_its_protocol():
    """The paper says nothing of the optimiser's state across rounds: ``protocol=paper`` keeps
    mixsup's fresh AdamW rather than claim a setting for the paper."""
    assert "stage1.carry_optimizer" not in PAPER
    assert load_config("small", overrides=["protocol=paper"]).stage1.carry_optimizer is False


def test_an_optimiser_carried_across_rounds_keeps_counting_steps(shapes_data, tmp_path):
    from mixsup.storage.artefacts import load_checkpoint
    from mixsup.train.api import train
    from tests.helpers import FAST

    cfg = load_config("tiny", overrides=[*FAST, "stage1.rounds=1", "protocol=paper",
                                         "stage1.carry_optimizer=true"])
    train(shapes_data, tmp_path / "run", cfg, mode="pixel", progress=False)
    steps = [load_checkpoint(tmp_path / "run" / f"round_{r}" / "optimizer.pt")["optimizer"]
             ["state"][0]["step"] for r in (0, 1)]
    per_round = cfg.stage1.steps_per_epoch * cfg.stage1.epochs_init
    assert float(steps[0]) == per_round
    assert float(steps[1]) == per_round + cfg.stage1.steps_per_epoch * cfg.stage1.epochs_per_round
