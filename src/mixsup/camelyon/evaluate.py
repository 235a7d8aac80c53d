"""``mixsup stage evaluate``: kappa over patients and a confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from mixsup.errors import MixsupError
from mixsup.labels.stages import (
    STAGES,
    quadratic_kappa,
    read_stage_csv,
    stages_from_nodes,
)
from mixsup.render.plotting import save_png
from mixsup.storage.atomic import write_json
from mixsup.storage.records import to_json


@dataclass(frozen=True)
class StageMetrics:
    """``metrics.json`` of ``stage evaluate``."""

    kappa: float  # quadratic-weighted, over the pN stages in clinical order
    n_patients: int
    accuracy: float
    labels: list[str]
    confusion_matrix: list[list[int]]  # rows true, columns predicted, in ``labels`` order
    missing_predictions: list[str]


def evaluate_stages(pred_csv: str | Path, labels_csv: str | Path,
                    out: str | Path) -> StageMetrics:
    pred_p, pred_n = read_stage_csv(pred_csv)
    true_p, true_n = read_stage_csv(labels_csv)
    # Patient rows win; patients given by node rows only are staged by the rules.
    pred = stages_from_nodes(pred_n) | pred_p
    truth = stages_from_nodes(true_n) | true_p
    common = sorted(set(pred) & set(truth))
    if not common:
        raise MixsupError("no patient appears in both files",
                          "check the patient ids (patient_XXX)", pred_csv)
    t, p = [truth[c] for c in common], [pred[c] for c in common]
    cm = confusion_matrix(t, p, labels=list(STAGES))
    metrics = StageMetrics(quadratic_kappa(t, p), len(common),
                           float(np.mean([a == b for a, b in zip(t, p, strict=True)])),
                           list(STAGES), cm.tolist(), sorted(set(truth) - set(pred)))
    out = Path(out)
    write_json(out / "metrics.json", to_json(metrics))
    _plot(out / "confusion_matrix.png", cm, metrics.kappa)
    return metrics


def _plot(path: Path, cm: np.ndarray, kappa: float) -> None:
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(STAGES)), STAGES, rotation=30)
    ax.set_yticks(range(len(STAGES)), STAGES)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"pN stage, quadratic kappa = {kappa:.4f}")
    fig.tight_layout()
    save_png(fig, path, dpi=110)
