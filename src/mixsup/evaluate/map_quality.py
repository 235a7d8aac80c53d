"""How good θ1's maps are per round, against true tumour outlines (``truth/`` of synth data).

For every labelled training slide with a truth file: pixel IoU of (p >= 0.5) against the true
mask on the stored map grid of its tissue patches (positive slides), the fraction of pixels
called tumour (negative slides), and what stage 2 will see: the share of each positive slide's
top-K patches that touch a true lesion, and how well the mean of the top-K max probabilities
alone ranks the slides (AUC).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from mixsup.labels.annotations import read_annotations
from mixsup.labels.regions import POSITIVE
from mixsup.labels.table import load_dataset
from mixsup.run import saved_config
from mixsup.scoring.map_store import open_maps
from mixsup.scoring.topk import top_k


@dataclass(frozen=True)
class RoundQuality:
    round: int
    iou_positive_slides: float
    mean_slide_iou: float
    negative_slides_positive_fraction: float
    topk_hit_rate: float  # mean over positive slides of the share of top-K touching tumour
    topk_slide_auc: float  # training slides ranked by the mean of their top-K max probabilities
    top_k: int


def topk_hit_rate(true_masks: np.ndarray, max_prob: np.ndarray, k: int) -> float:
    """Share of the ``k`` highest-scoring patches whose true mask holds any tumour pixel."""
    if not len(max_prob):
        return float("nan")
    idx = top_k(max_prob, k)
    return float(np.asarray(true_masks)[idx].reshape(len(idx), -1).any(1).mean())


def run_top_k(run_dir: Path, default: int = 16) -> int:
    cfg = saved_config(run_dir)
    return default if cfg is None else cfg.stage2.top_k


def round_map_quality(run_dir: str | Path, data_dir: str | Path,
                      truth_dir: str | Path | None = None,
                      k: int | None = None) -> list[RoundQuality]:
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    truth_dir = Path(truth_dir) if truth_dir else data_dir / "truth"
    k = k or run_top_k(run_dir)
    data = load_dataset(data_dir)
    labels = {s.slide_id: s.label for s in data.slides}
    rows = []
    for rdir in sorted(run_dir.glob("round_*"), key=lambda p: int(p.name.split("_")[1])):
        inter = union = 0
        neg_pos = neg_all = 0
        per_slide_iou, hits, slide_y, slide_score = [], [], [], []
        for store in sorted((rdir / "maps").glob("*.zarr")):
            sid = store.stem
            got = open_maps(store)
            truth_path = truth_dir / f"{sid}.geojson"
            label = labels.get(sid)
            if got is None or label is None or not truth_path.is_file():
                continue
            coords, attrs = got.coords, got.attrs
            if len(coords):
                slide_y.append(int(label))
                slide_score.append(float(got.max_prob[top_k(got.max_prob, k)].mean()))
            pred = got.maps[:] >= 0.5
            if label == 0:
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
            if len(coords):
                hits.append(topk_hit_rate(true, got.max_prob, k))
        both = len(set(slide_y)) == 2
        rows.append(RoundQuality(
            round=int(rdir.name.split("_")[1]),
            iou_positive_slides=inter / union if union else float("nan"),
            mean_slide_iou=float(np.mean(per_slide_iou)) if per_slide_iou else float("nan"),
            negative_slides_positive_fraction=neg_pos / neg_all if neg_all else float("nan"),
            topk_hit_rate=float(np.mean(hits)) if hits else float("nan"),
            topk_slide_auc=float(roc_auc_score(slide_y, slide_score)) if both else float("nan"),
            top_k=k))
    return rows


def write_quality(path: Path, rows: list[RoundQuality]) -> None:
    from mixsup.atomic import write_text

    write_text(path, json.dumps([asdict(r) for r in rows], indent=2) + "\n")
