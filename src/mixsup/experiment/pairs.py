"""The experiment's paired comparisons: every two modes of a group (the plain modes, or one
ablation setting) on the same test slides, by θ2's slide score and by θ1's own (the mean of
the top-K patches' maximum pixel probability), with bootstrap intervals."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixsup.evaluate.paired import PairedDifference, holm, paired_difference
from mixsup.evaluate.report import read_predictions
from mixsup.methods.registry import MODES
from mixsup.storage.atomic import atomic_open

SCORES = {"slide": "θ2 (the mode's slide score)", "theta1": "θ1 alone (top-K mean max prob.)"}
PAIRED_METRICS = ("auc", "specificity_at_full_sensitivity")


def theta1_scores(pred_dir: Path) -> dict[str, float]:
    """Each slide's θ1-only score: the mean of its top-K patches' maximum pixel probability
    (``topk.csv``); 0 for a slide without tissue, as ``predict`` scores it."""
    per_slide: dict[str, list[float]] = {}
    with open(pred_dir / "topk.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            per_slide.setdefault(row["slide_id"], []).append(float(row["max_pixel_prob"]))
    return {sid: float(np.mean(per_slide[sid])) if sid in per_slide else 0.0
            for sid in read_predictions(pred_dir / "predictions.csv")}


def run_scores(pred: Path, which: str) -> dict[str, float]:
    """A run's test scores (``pred``: its prediction folder) by a key of SCORES."""
    return read_predictions(pred / "predictions.csv") if which == "slide" else theta1_scores(pred)


def split_variant(name: str) -> tuple[str, str]:
    """``"mixed pixel-slides=3"`` -> (``"mixed"``, ``"pixel-slides=3"``)."""
    mode, _, setting = name.partition(" ")
    return mode, setting


def join_variant(mode: str, setting: str) -> str:
    """The inverse of ``split_variant``: (``"mixed"``, ``""``) -> ``"mixed"``."""
    return f"{mode} {setting}" if setting else mode


def pairs(variants: Sequence[str], shared: frozenset[str] = frozenset()
          ) -> list[tuple[str, str]]:
    """Every two variants of the same setting, in the registry's order (mixed - pixel, mixed -
    image, pixel - image, ...), and each variant of a setting with its own mode's base run (the
    setting's effect on that mode). A setting whose key is in ``shared`` changes only what its
    variants' mode reads (an EM switch: pixel and image runs are the same at every value), so
    each of its variants is paired with every variant of the base setting instead."""
    order = {m: i for i, m in enumerate(MODES)}
    groups: dict[str, list[str]] = {}
    for v in variants:
        groups.setdefault(split_variant(v)[1], []).append(v)
    by_mode = lambda v: order.get(split_variant(v)[0], len(order))  # noqa: E731
    base = sorted(groups.get("", []), key=by_mode)
    out = []
    for setting, members in groups.items():
        members = sorted(members, key=by_mode)
        out += list(itertools.combinations(members, 2))
        if setting and setting.partition("=")[0] in shared:
            out += [(m, b) for m in members for b in base]
        elif setting:
            out += [(m, b) for m in members for b in base
                    if split_variant(b)[0] == split_variant(m)[0]]
    return out


@dataclass(frozen=True)
class PairRow:
    score: str  # a key of SCORES
    diff: PairedDifference


def paired_table(runs: dict[str, dict[int, Path]], labels: dict[str, int],
                 n_boot: int = 2000, shared: frozenset[str] = frozenset()) -> list[PairRow]:
    """``runs``: variant -> seed -> the run's prediction folder. Pairs use the seeds both
    variants ran and the labelled slides both scored in every one of them; ``shared``: as for
    ``pairs``."""
    rows = []
    for a, b in pairs(list(runs), shared):
        seeds = sorted(set(runs[a]) & set(runs[b]))
        if not seeds:
            continue
        for which in SCORES:
            if which != "slide" and not all(
                    MODES[split_variant(v)[0]].ranks_by_probability for v in (a, b)):
                continue  # attention weights give no θ1-alone slide score
            rows += _pair_rows(which, a, b, [run_scores(runs[a][s], which) for s in seeds],
                               [run_scores(runs[b][s], which) for s in seeds], labels, n_boot)
    return rows


def _pair_rows(score: str, a: str, b: str, sa: list[dict[str, float]],
               sb: list[dict[str, float]], labels: dict[str, int],
               n_boot: int) -> list[PairRow]:
    """``a - b`` on every paired metric, per seed on the labelled slides that both scored in
    every seed; none unless those hold both classes."""
    ids = sorted(set(labels).intersection(*sa, *sb))
    y = np.array([labels[i] for i in ids])
    if len(set(y.tolist())) < 2:
        return []
    return [PairRow(score, paired_difference(
        a, b, [np.array([x[i] for i in ids]) for x in sa],
        [np.array([x[i] for i in ids]) for x in sb], y, metric, n_boot=n_boot))
        for metric in PAIRED_METRICS]


def stage2_table(runs: dict[str, dict[int, Path]], labels: dict[str, int],
                 n_boot: int = 2000) -> list[PairRow]:
    """Within each variant whose mode has a θ2 and scores by probability: its θ2 slide score
    against its own θ1's top-K mean on the same runs and slides, so that what stage 2 adds
    (or loses) gets a paired interval. The rows' score is ``"stage2"``."""
    rows = []
    for name, by_seed in runs.items():
        mode = MODES[split_variant(name)[0]]
        if not (mode.theta2 and mode.ranks_by_probability):
            continue
        seeds = sorted(by_seed)
        rows += _pair_rows("stage2", f"{name} θ2", f"{name} θ1 alone",
                           [run_scores(by_seed[s], "slide") for s in seeds],
                           [run_scores(by_seed[s], "theta1") for s in seeds], labels, n_boot)
    return rows


def stage2_markdown(rows: list[PairRow]) -> list[str]:
    by_pair: dict[tuple[str, str], dict[str, PairedDifference]] = {}
    for row in rows:
        by_pair.setdefault((row.diff.a, row.diff.b), {})[row.diff.metric] = row.diff
    if not by_pair:
        return []
    lines = ["", "Does stage 2 keep θ1's lead? Each variant's θ2 slide score against its own "
             "θ1's top-K mean, paired on the same runs and slides:", "",
             "| θ2 − θ1 alone | Δ AUC [95% CI, these runs] | Δ AUC, seeds redrawn [95% CI] | "
             "Δ spec @ sens 1 [95% CI, these runs] |", "|---|---|---|---|"]
    for (a, _), ms in by_pair.items():
        lines.append(f"| {a.removesuffix(' θ2')} | {ci_cell(ms.get('auc'))} | "
                     f"{ci_cell(ms.get('auc'), over_seeds=True)} | "
                     f"{ci_cell(ms.get('specificity_at_full_sensitivity'))} |")
    return lines


COLUMNS = ["a", "b", "score", "metric", "difference", "ci_low", "ci_high", "excludes_zero",
           "seeds_ci_low", "seeds_ci_high", "excludes_zero_over_seeds", "seeds_p",
           "seeds_p_holm", "seeds", "per_seed", "n_slides", "n_boot"]


def holm_by_metric(rows: list[PairRow]) -> list[float]:
    """Each row's over-seeds p, Holm-adjusted over the rows of the same metric and kind
    (between variants, or stage 2 within one): the family is every comparison its table
    reads on that metric."""
    adjusted = [float("nan")] * len(rows)
    family = lambda row: (row.diff.metric, row.score == "stage2")  # noqa: E731
    for key in {family(row) for row in rows}:
        idx = [i for i, row in enumerate(rows) if family(row) == key]
        for i, p in zip(idx, holm([rows[i].diff.seeds_p for i in idx]), strict=True):
            adjusted[i] = float(p)
    return adjusted


def write_paired(path: Path, rows: list[PairRow]) -> None:
    with atomic_open(path) as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        for row, p_holm in zip(rows, holm_by_metric(rows), strict=True):
            d = row.diff
            w.writerow([d.a, d.b, row.score, d.metric, f"{d.estimate:.4f}", f"{d.low:.4f}",
                        f"{d.high:.4f}", d.excludes_zero, f"{d.seeds_low:.4f}",
                        f"{d.seeds_high:.4f}", d.excludes_zero_over_seeds, f"{d.seeds_p:.4f}",
                        f"{p_holm:.4f}", len(d.per_seed),
                        " ".join(f"{x:.4f}" for x in d.per_seed), d.n_slides, d.n_boot])


def paired_markdown(rows: list[PairRow]) -> list[str]:
    within = [row for row in rows if row.score == "stage2"]
    rows = [row for row in rows if row.score != "stage2"]
    return _between_markdown(rows) + stage2_markdown(within)


def _between_markdown(rows: list[PairRow]) -> list[str]:
    if not rows:
        return ["", "Paired differences: none (they need two modes that scored the same "
                "positive and negative test slides)."]
    lines = ["", "Paired differences on the same test slides (mean over seeds of a − b; 95% "
             "bootstrap interval over test slides, one draw shared by both modes and every "
             "seed; AUC is the primary criterion; specificity at 100% sensitivity hangs on "
             "the single lowest-scored positive slide). The last interval is for a new draw "
             "of the runs as well as of the slides: the seeds' share of the variance added "
             "by the method of moments, Student's t; approximate with few seeds. Its p is "
             "given raw and Holm-adjusted over every AUC comparison in this table:", "",
             "| a − b | score | Δ AUC [95% CI] | Δ spec @ sens 1 [95% CI] | seeds | slides "
             "| Δ AUC, seeds redrawn [95% CI] | p (Holm-adjusted) |",
             "|---|---|---|---|---|---|---|---|"]
    adjusted = {id(row.diff): p for row, p in zip(rows, holm_by_metric(rows), strict=True)}
    by_key: dict[tuple[str, str, str], dict[str, PairedDifference]] = {}
    for row in rows:
        d = row.diff
        by_key.setdefault((d.a, d.b, row.score), {})[d.metric] = d
    for (a, b, which), ms in by_key.items():
        cells = [ci_cell(ms.get(m)) for m in PAIRED_METRICS]
        any_d = next(iter(ms.values()))
        lines.append(f"| {a} − {b} | {SCORES[which]} | {cells[0]} | {cells[1]} | "
                     f"{len(any_d.per_seed)} | {any_d.n_slides} | "
                     f"{ci_cell(ms.get('auc'), over_seeds=True)} | "
                     f"{p_pair(ms.get('auc'), adjusted)} |")
    return lines


def p_cell(p: float | None) -> str:
    return "n/a" if p is None or np.isnan(p) else f"{p:.3f}"


def p_pair(d: PairedDifference | None, adjusted: dict[int, float]) -> str:
    """``0.021 (0.042)``: the raw p, and in brackets the Holm-adjusted one."""
    if d is None:
        return "n/a"
    return f"{p_cell(d.seeds_p)} ({p_cell(adjusted.get(id(d)))})"


def ci_cell(d: PairedDifference | None, over_seeds: bool = False) -> str:
    """``+0.042 [-0.011, +0.111]``, starred when the interval excludes 0; ``over_seeds``: the
    interval that redraws the seeds too."""
    if d is None:
        return "n/a"
    low, high = (d.seeds_low, d.seeds_high) if over_seeds else (d.low, d.high)
    if np.isnan(low):
        return "n/a"
    star = " *" if (d.excludes_zero_over_seeds if over_seeds else d.excludes_zero) else ""
    return f"{d.estimate:+.3f} [{low:+.3f}, {high:+.3f}]{star}"
