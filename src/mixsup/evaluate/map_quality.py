"""How good θ1's maps are per round, against true tumour outlines (the answer key of
``mixsup synth``).

On the training slides (the E-step's stored maps) or on held-out ones (val, test: scored by
``inference.round_maps``), for every labelled slide with a truth file: tumour recall and
precision of (p >= 0.5) on the stored map grid of its tissue patches (false positives on
negative slides count against the precision), pixel IoU on positive slides, the fraction of
pixels called tumour on negative slides, and what stage 2 will see: the share of each positive
slide's top-K patches that touch a true lesion, how well the mean of the top-K max
probabilities alone ranks the slides (AUC), and the share of positive and of negative slides
with a patch that reaches the run's T (the slides an E-step would take anything from).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from mixsup.config.run import RUN_FIX, round_folders, saved_config
from mixsup.inference.map_store import StoredMaps, finite_maps, read_maps
from mixsup.inference.topk import top_k
from mixsup.labels.annotations import read_annotations
from mixsup.labels.regions import POSITIVE
from mixsup.labels.table import load_dataset
from mixsup.storage.user_files import own_file, read_json
from mixsup.synth.layout import answer_key


@dataclass(frozen=True)
class RoundQuality:
    round: int
    iou_positive_slides: float
    mean_slide_iou: float
    negative_slides_positive_fraction: float
    topk_hit_rate: float  # mean over positive slides of the share of top-K touching tumour
    topk_slide_auc: float  # slides ranked by the mean of their top-K max probabilities
    top_k: int
    split: str = "train"
    recall_positive_slides: float = float("nan")  # true tumour pixels called tumour
    precision: float = float("nan")  # pixels called tumour that are, negative slides included
    slides: int = 0
    threshold: float = float("nan")  # the run's T (stage1.threshold)
    positive_slides_reaching_t: float = float("nan")  # share with a patch whose max p >= T
    negative_slides_reaching_t: float = float("nan")


def topk_hit_rate(true_masks: np.ndarray, max_prob: np.ndarray, k: int) -> float:
    """Share of the ``k`` highest-scoring patches whose true mask holds any tumour pixel."""
    if not len(max_prob):
        return float("nan")
    idx = top_k(max_prob, k)
    return float(np.asarray(true_masks)[idx].reshape(len(idx), -1).any(1).mean())


def run_top_k(run_dir: Path, default: int = 16) -> int:
    cfg = saved_config(run_dir)
    return default if cfg is None else cfg.stage2.top_k


def run_threshold(run_dir: Path, default: float = 0.4) -> float:
    cfg = saved_config(run_dir)
    return default if cfg is None else cfg.stage1.threshold


def run_selected_round(run_dir: Path) -> int | None:
    """The round the finished run selected (``summary.json``), or None."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    with own_file(path, "run summary", RUN_FIX):
        selected = read_json(path, "run summary")["selected_round"]
        if selected is not None and (type(selected) is not int or selected < 0):
            raise ValueError(f"selected_round is {selected!r}, not a round")
    return selected


@dataclass(frozen=True)
class CoverageCheck:
    """The paper's mechanism on one split, from round 0 to the selected round: tumour recall
    on positive slides rises while the tumour called on negative slides does not."""

    split: str
    selected: int
    recall: tuple[float, float]  # round 0, selected round
    negative_fraction: tuple[float, float]

    @property
    def recall_rose(self) -> bool:
        return self.recall[1] > self.recall[0]

    @property
    def negatives_not_higher(self) -> bool:
        return self.negative_fraction[1] <= self.negative_fraction[0]

    def line(self) -> str:
        verdict = ("shown" if self.recall_rose and self.negatives_not_higher else
                   "not shown: " + " and ".join(
                       ([] if self.recall_rose else ["recall did not rise"]) +
                       ([] if self.negatives_not_higher else ["negatives' tumour rose"])))
        return (f"{self.split}: round 0 -> selected round {self.selected}: recall "
                f"{self.recall[0]:.4f} -> {self.recall[1]:.4f}, tumour fraction on negative "
                f"slides {self.negative_fraction[0]:.4f} -> {self.negative_fraction[1]:.4f}; "
                f"the paper's coverage mechanism is {verdict}")


def coverage_checks(rows: list[RoundQuality], selected: int) -> list[CoverageCheck]:
    """One check per split that has both round 0 and the selected round (none when round 0
    was selected)."""
    by = {(r.split, r.round): r for r in rows}
    return [CoverageCheck(split, selected,
                          (by[split, 0].recall_positive_slides,
                           by[split, selected].recall_positive_slides),
                          (by[split, 0].negative_slides_positive_fraction,
                           by[split, selected].negative_slides_positive_fraction))
            for split in dict.fromkeys(r.split for r in rows)
            if selected != 0 and (split, 0) in by and (split, selected) in by]


def share_reaching(slide_max: list[float], threshold: float) -> float:
    """Share of slides whose highest patch probability reaches ``threshold``: the slides an
    E-step at T = ``threshold`` keeps any patch of (the paper's filter is inclusive)."""
    return float(np.mean(np.asarray(slide_max) >= threshold)) if slide_max else float("nan")


def round_map_quality(run_dir: str | Path, data_dir: str | Path,
                      truth_dir: str | Path | None = None,
                      k: int | None = None) -> list[RoundQuality]:
    """Every round's stored E-step maps (the training slides) against the truth."""
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    truth_dir = Path(truth_dir) if truth_dir else default_truth(data_dir)
    k = k or run_top_k(run_dir)
    labels = {s.slide_id: s.label for s in load_dataset(data_dir).slides}
    threshold = run_threshold(run_dir)
    rows = []
    for r, rdir in round_folders(run_dir).items():
        maps = {store.stem: read_maps(store) for store in sorted((rdir / "maps").glob("*.zarr"))}
        rows.append(map_quality(r, "train", maps, labels, truth_dir, k, threshold))
    return rows


def default_truth(data_dir: Path) -> Path:
    """``mixsup synth``'s answer key beside the dataset, else ``truth/`` inside it (where
    older datasets keep it)."""
    key = answer_key(data_dir)
    return key if key.is_dir() else data_dir / "truth"


def map_quality(r: int, split: str, maps: Mapping[str, StoredMaps | None],
                labels: Mapping[str, int | None], truth_dir: Path, k: int,
                threshold: float = 0.4) -> RoundQuality:
    """One round's maps of some slides (id -> maps) against ``truth_dir/<id>.geojson``; slides
    without a label or a truth file are left out. ``threshold``: the run's T."""
    tp = fp = fn = 0
    neg_pos = neg_all = 0
    per_slide_iou, hits, slide_y, slide_score = [], [], [], []
    slide_max: dict[int, list[float]] = {0: [], 1: []}
    for sid, got in maps.items():
        truth_path = truth_dir / f"{sid}.geojson"
        label = labels.get(sid)
        if got is None or label is None or not truth_path.is_file():
            continue
        coords = got.coords
        if len(coords):
            slide_y.append(int(label))
            slide_score.append(float(got.max_prob[top_k(got.max_prob, k)].mean()))
            slide_max[int(label)].append(float(np.max(got.max_prob)))
        pred = finite_maps(got) >= 0.5
        if label == 0:
            neg_pos += int(pred.sum())
            neg_all += pred.size
            continue
        truth = read_annotations(truth_path)
        m = got.maps.shape[-1]
        ds = got.size0 / m
        true = np.stack([truth.rasterize(x, y, m, m, ds) == POSITIVE for x, y in coords]) \
            if len(coords) else np.zeros_like(pred)
        i, u = int((pred & true).sum()), int((pred | true).sum())
        tp, fp, fn = tp + i, fp + int((pred & ~true).sum()), fn + int((~pred & true).sum())
        if u:
            per_slide_iou.append(i / u)
        if len(coords):
            hits.append(topk_hit_rate(true, got.max_prob, k))
    both = len(set(slide_y)) == 2
    union = tp + fp + fn
    return RoundQuality(
        round=r,
        iou_positive_slides=tp / union if union else float("nan"),
        mean_slide_iou=float(np.mean(per_slide_iou)) if per_slide_iou else float("nan"),
        negative_slides_positive_fraction=neg_pos / neg_all if neg_all else float("nan"),
        topk_hit_rate=float(np.mean(hits)) if hits else float("nan"),
        topk_slide_auc=float(roc_auc_score(slide_y, slide_score)) if both else float("nan"),
        top_k=k, split=split,
        recall_positive_slides=tp / (tp + fn) if tp + fn else float("nan"),
        precision=tp / (tp + fp + neg_pos) if tp + fp + neg_pos else float("nan"),
        slides=len(slide_y), threshold=threshold,
        positive_slides_reaching_t=share_reaching(slide_max[1], threshold),
        negative_slides_reaching_t=share_reaching(slide_max[0], threshold))


def write_quality(path: Path, rows: list[RoundQuality]) -> None:
    from mixsup.storage.atomic import write_text

    write_text(path, json.dumps([asdict(r) for r in rows], indent=2) + "\n")
