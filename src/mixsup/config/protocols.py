"""``protocol: paper``: every setting in which mixsup departs from the paper's method, set back
to the paper's. Each row is one deviation; the README says why mixsup keeps it by default.
Settings the paper does not state (whether the optimiser's state carries across rounds) are not
here: ``protocol=paper`` keeps mixsup's choice for them."""

from __future__ import annotations

from typing import Any

PAPER: dict[str, Any] = {
    "stage1.ratio": [2, 1, 7],  # the small preset uses the authors' code's 52:9:40
    "stage1.keep_negatives": False,  # the paper: each round's hard negatives only
    "stage1.negative_fallback": "none",  # no random negative top-up
    "stage1.on_collapse": "warn",  # no rollback of a collapsed round
    "stage1.round_lr": None,  # one learning rate
    "stage1.pseudo_labels": "soft",
    "stage1.positive_keep_top": 0,
    "stage1.teacher": "last",
    "stage1.fine_tumour_share": None,  # pixel-label patches drawn uniformly
    "stage2.select_by": "train_loss",  # θ2's final training loss, not its curve
    "stage2.select_tolerance": 0.0,  # the lowest loss exactly ...
    "stage2.tie_break": "earliest",  # ... and an argmin's first round on an exact tie
    "stage2.include_round0": False,
    "stage2.init": "encoder",  # θ2 is its own network, not a fine-tuned θ1
    "training.stain_sigma": 0.0,  # no HED stain jitter
    "training.stain_bias": 0.0,
    "training.lr_schedule": "constant",  # no warm-up + cosine
    "training.warmup_fraction": 0.0,
    "training.label_smoothing": 0.0,
    "runtime.bn_recalibration_batches": 0,  # no precise-BN pass after training
}

PROTOCOLS: dict[str, dict[str, Any]] = {"mixsup": {}, "paper": PAPER}


def apply_protocol(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a config as a dict) with its protocol's settings forced, whatever the preset or
    earlier overrides said. An unknown protocol is left for validation to report."""
    for key, value in PROTOCOLS.get(str(data.get("protocol", "mixsup")), {}).items():
        node: Any = data
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):  # else the section is malformed: validation says so
            node[last] = value
    return data
