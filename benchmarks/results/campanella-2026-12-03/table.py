"""One markdown row per image-mode run folder: epoch losses, val AUC (max aggregation, from
mil/summary.json), test AUC, specificity at sensitivity 1, tied fraction of test scores (evaluate's
metrics.json), range of test scores, and the train-slide AUC where eval-train/ exists.

usage: python table.py RUNS_DIR NAME...   (each NAME/ holds mil/, eval-test/, pred-test/)
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

root = Path(sys.argv[1])
for name in sys.argv[2:]:
    r = root / name
    s = json.loads((r / "mil/summary.json").read_text())
    m = json.loads((r / "eval-test/metrics.json").read_text())
    with open(r / "pred-test/predictions.csv") as fh:
        p = np.array([float(x["probability"]) for x in csv.DictReader(fh)])
    val = s.get("val") or {}
    vs, vl = val.get("scores", {}), val.get("labels", {})
    vauc = roc_auc_score([vl[k] for k in vs], [vs[k] for k in vs]) if vs else float("nan")
    tr = r / "eval-train/metrics.json"
    tauc = f"{json.loads(tr.read_text())['auc']:.3f}" if tr.is_file() else "–"
    losses = ", ".join(f"{x:.3f}" for x in s["epoch_losses"])
    print(f"| {name} | {losses} | {tauc} | {vauc:.3f} | {m['auc']:.3f} | "
          f"{m['specificity_at_full_sensitivity']:.3f} | {m['tied_fraction']:.2f} | "
          f"{p.min():.4f}–{p.max():.6f} |")
