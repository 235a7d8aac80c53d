"""Camelyon17 labels: node classes, pN stages (the staging rules) and stage_labels.csv."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from sklearn.metrics import cohen_kappa_score

from mixsup.errors import MixsupError
from mixsup.labels.table import NODE_CLASSES
from mixsup.storage.user_files import read_text

STAGES = ("pN0", "pN0(i+)", "pN1mi", "pN1", "pN2")  # clinical (ordinal) order
_PATIENT = re.compile(r"^(patient_\d+)\.zip$")
_NODE = re.compile(r"^(patient_\d+)_node_(\d{1,9})\.tif$")


def pn_stage(node_classes: Iterable[str]) -> str:
    """The patient's pN stage from its nodes' classes (Camelyon17 rules)."""
    classes = [c.lower() for c in node_classes]
    unknown = set(classes) - set(NODE_CLASSES)
    if unknown:
        raise ValueError(f"unknown node class(es) {sorted(unknown)}; use {NODE_CLASSES}")
    macro = classes.count("macro")
    metastatic = macro + classes.count("micro")  # isolated tumour cells do not count
    if macro:
        return "pN1" if metastatic <= 3 else "pN2"
    if classes.count("micro"):
        return "pN1mi"
    if classes.count("itc"):
        return "pN0(i+)"
    return "pN0"


def quadratic_kappa(truth: list[str], pred: list[str]) -> float:
    """Quadratic-weighted Cohen's kappa with the stages in clinical order.

    Without explicit labels sklearn sorts the strings, which puts pN1 before pN1mi and breaks
    the ordinal weights.
    """
    return float(cohen_kappa_score(truth, pred, labels=list(STAGES), weights="quadratic"))


def read_stage_csv(path: str | Path) -> tuple[dict[str, str], dict[str, dict[int, str]]]:
    """(patient -> stage, patient -> {node -> class}) from a Camelyon17-format CSV."""
    path = Path(path)
    patients: dict[str, str] = {}
    nodes: dict[str, dict[int, str]] = defaultdict(dict)
    try:
        rows = list(csv.reader(io.StringIO(read_text(path, "stage CSV"), newline="")))
    except csv.Error as exc:
        raise MixsupError(f"not a CSV table ({exc})", "save it as CSV", path) from None
    for line, row in enumerate(rows, start=1):
        if not row or (line == 1 and row[0].strip().lower() == "patient"):
            continue
        if len(row) < 2:
            raise MixsupError(f"line {line}: expected 'name,value'", "use the Camelyon17 "
                              "format (patient_XXX.zip,pN1 / patient_XXX_node_Y.tif,macro)",
                              path)
        name, value = row[0].strip(), row[1].strip()
        if m := _PATIENT.match(name):
            if value not in STAGES:
                raise MixsupError(f"line {line}: unknown stage {value!r}",
                                  f"use one of {', '.join(STAGES)}", path)
            patients[m.group(1)] = value
        elif m := _NODE.match(name):
            if value.lower() not in NODE_CLASSES:
                raise MixsupError(f"line {line}: unknown node class {value!r}",
                                  f"use one of {', '.join(NODE_CLASSES)}", path)
            nodes[m.group(1)][int(m.group(2))] = value.lower()
        else:
            raise MixsupError(f"line {line}: unrecognised name {name!r}",
                              "names are patient_XXX.zip or patient_XXX_node_Y.tif", path)
    return patients, dict(nodes)


def stages_from_nodes(nodes: dict[str, dict[int, str]]) -> dict[str, str]:
    return {p: pn_stage(n.values()) for p, n in nodes.items()}


def write_stage_csv(path: str | Path, nodes: dict[str, dict[int, str]],
                    stages: dict[str, str]) -> None:
    """Camelyon17 submission format: each patient row followed by its node rows."""
    from mixsup.storage.atomic import atomic_open

    with atomic_open(path) as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["patient", "stage"])
        for p in sorted(stages):
            w.writerow([f"{p}.zip", stages[p]])
            for n in sorted(nodes.get(p, {})):
                w.writerow([f"{p}_node_{n}.tif", nodes[p][n]])
