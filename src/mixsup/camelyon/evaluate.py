"""``mixsup stage evaluate``: kappa over patients and a confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import confusion_matrix

from mixsup.atomic import atomic_path, write_json
from mixsup.camelyon.staging import (
    STAGES,
    quadratic_kappa,
    read_stage_csv,
    stages_from_nodes,
)
from mixsup.errors import MixsupError


def evaluate_stages(pred_csv: str | Path, labels_csv: str | Path,
                    out: str | Path) -> dict[str, Any]:
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
    metrics = {"kappa": quadratic_kappa(t, p), "n_patients": len(common),
               "accuracy": float(np.mean([a == b for a, b in zip(t, p, strict=True)])),
               "labels": list(STAGES), "confusion_matrix": cm.tolist(),
               "missing_predictions": sorted(set(truth) - set(pred))}
    out = Path(out)
    write_json(out / "metrics.json", metrics)
    _plot(out / "confusion_matrix.png", cm, metrics["kappa"])
    return metrics


def _plot(path: Path, cm: np.ndarray, kappa: float) -> None:
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
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
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
