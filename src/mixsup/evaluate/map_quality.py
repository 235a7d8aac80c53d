"""How good θ1's maps are per round, against true tumour outlines (``truth/`` of synth data).

For every labelled training slide with a truth file: pixel IoU of (p >= 0.5) against the true
mask on the stored map grid of its tissue patches (positive slides), and the fraction of
pixels called tumour (negative slides).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mixsup.labels.annotations import POSITIVE, read_annotations
from mixsup.labels.table import load_dataset
from mixsup.mapstore import open_maps


def round_map_quality(run_dir: str | Path, data_dir: str | Path,
                      truth_dir: str | Path | None = None) -> list[dict[str, Any]]:
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    truth_dir = Path(truth_dir) if truth_dir else data_dir / "truth"
    data = load_dataset(data_dir)
    labels = {s.slide_id: s.label for s in data.slides}
    rows = []
    for rdir in sorted(run_dir.glob("round_*"), key=lambda p: int(p.name.split("_")[1])):
        inter = union = 0
        neg_pos = neg_all = 0
        per_slide_iou = []
        for store in sorted((rdir / "maps").glob("*.zarr")):
            sid = store.stem
            got = open_maps(store)
            truth_path = truth_dir / f"{sid}.geojson"
            if got is None or labels.get(sid) is None or not truth_path.is_file():
                continue
            coords, attrs = got.coords, got.attrs
            pred = got.maps[:] >= 0.5
            if labels[sid] == 0:
                neg_pos += int(pred.sum())
                neg_all += pred.size
                continue
            truth = read_annotations(truth_path)
            m = got.maps.shape[-1]
            ds = float(attrs["size0"]) / m
            true = np.stack([truth.rasterize(x, y, m, m, ds) == POSITIVE for x, y in coords]) \
                if len(coords) else np.zeros_like(pred)
            i, u = int((pred & true).sum()), int((pred | true).sum())
            inter += i
            union += u
            if u:
                per_slide_iou.append(i / u)
        rows.append({
            "round": int(rdir.name.split("_")[1]),
            "iou_positive_slides": inter / union if union else float("nan"),
            "mean_slide_iou": float(np.mean(per_slide_iou)) if per_slide_iou else float("nan"),
            "negative_slides_positive_fraction": neg_pos / neg_all if neg_all else float("nan"),
        })
    return rows


def write_quality(path: Path, rows: list[dict[str, Any]]) -> None:
    from mixsup.atomic import write_text

    write_text(path, json.dumps(rows, indent=2) + "\n")
