from __future__ import annotations

import json

import pytest

from mixsup.camelyon.evaluate import evaluate_stages
from mixsup.labels.stages import (
    pn_stage,
    quadratic_kappa,
    read_stage_csv,
    stages_from_nodes,
    write_stage_csv,
)


def test_rules_reproduce_every_official_stage(shared):
    patients, nodes = read_stage_csv(shared / "annotations" / "camelyon17" / "stage_labels.csv")
    assert len(patients) == 100 and sum(len(n) for n in nodes.values()) == 500
    derived = stages_from_nodes(nodes)
    wrong = {p: (patients[p], derived[p]) for p in patients if derived[p] != patients[p]}
    assert not wrong


@pytest.mark.parametrize("nodes,stage", [
    (["negative"] * 5, "pN0"),
    (["itc", "negative", "itc", "negative", "negative"], "pN0(i+)"),
    (["micro", "itc", "negative", "negative", "negative"], "pN1mi"),
    (["macro", "micro", "micro", "itc", "itc"], "pN1"),
    (["macro", "micro", "micro", "micro", "negative"], "pN2"),
    (["micro", "micro", "micro", "micro", "micro"], "pN1mi"),  # no macro: not pN2
])
def test_rules(nodes, stage):
    assert pn_stage(nodes) == stage


def test_kappa_matches_hand_computed_cases():
    assert quadratic_kappa(["pN0", "pN1", "pN2"], ["pN0", "pN1", "pN2"]) == pytest.approx(1.0)
    # Two patients, pN0 vs pN2 swapped: observed weighted disagreement 2*(4/4)^2 / ... = -1
    assert quadratic_kappa(["pN0", "pN2"], ["pN2", "pN0"]) == pytest.approx(-1.0)
    # Ordinal order matters: pN1mi is between pN0(i+) and pN1.
    t = ["pN0", "pN0(i+)", "pN1mi", "pN1", "pN2"]
    near = quadratic_kappa(t, ["pN0", "pN0(i+)", "pN1", "pN1", "pN2"])  # one step off
    far = quadratic_kappa(t, ["pN0", "pN0(i+)", "pN0", "pN1", "pN2"])  # two steps off
    assert near > far
    # hand computation for the one-step case: weights (i-j)^2/16, 5 classes
    import numpy as np

    obs = np.zeros((5, 5))
    for a, b in zip([0, 1, 2, 3, 4], [0, 1, 3, 3, 4], strict=True):
        obs[a, b] += 1
    w = np.array([[(i - j) ** 2 / 16 for j in range(5)] for i in range(5)])
    exp = np.outer(obs.sum(1), obs.sum(0)) / obs.sum()
    assert near == pytest.approx(1 - (w * obs).sum() / (w * exp).sum())


def test_stage_evaluate_with_node_rows_only(shared, tmp_path):
    labels = shared / "annotations" / "camelyon17" / "stage_labels.csv"
    _, nodes = read_stage_csv(labels)
    nodes["patient_000"] = dict.fromkeys(nodes["patient_000"], "macro")  # pN0 -> pN2
    pred = tmp_path / "pred.csv"
    with open(pred, "w") as fh:
        fh.write("patient,stage\n")
        for p, ns in nodes.items():
            for n, c in ns.items():
                fh.write(f"{p}_node_{n}.tif,{c}\n")
    m = evaluate_stages(pred, labels, tmp_path / "out")
    assert m.n_patients == 100 and 0.9 < m.kappa < 1.0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["kappa"] == m.kappa
    assert (tmp_path / "out" / "confusion_matrix.png").is_file()


def test_write_and_read_back(tmp_path):
    nodes = {"patient_001": {0: "macro", 1: "negative"}}
    write_stage_csv(tmp_path / "s.csv", nodes, stages_from_nodes(nodes))
    patients, back = read_stage_csv(tmp_path / "s.csv")
    assert patients == {"patient_001": "pN1"} and back == nodes
