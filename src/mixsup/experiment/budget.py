"""The label-budget curve (``--ablate pixel-slides=...``): mixed and pixel test AUC, and their
paired difference, against the number of slides that keep pixel labels. The paper's thesis is
that mixed supervision matters most when pixel labels are scarce; this is the figure to read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mixsup.evaluate.paired import PairedDifference
from mixsup.experiment.pairs import SCORES, PairRow, ci_cell, join_variant, split_variant
from mixsup.render.plotting import save_png

KEY = "pixel-slides"


@dataclass(frozen=True)
class BudgetPoint:
    """One label budget: the two modes' AUC over seeds and their paired difference."""

    slides: int
    setting: str  # "" for the base runs (every annotated slide), else "pixel-slides=N"
    auc: dict[str, tuple[float, float]]  # mode -> (mean, std) over seeds
    diff: dict[str, PairedDifference]  # a key of SCORES -> mixed - pixel on AUC


def budget_points(aucs: dict[str, tuple[float, float]], pairs: list[PairRow],
                  base_slides: int, a: str = "mixed", b: str = "pixel") -> list[BudgetPoint]:
    """``aucs``: variant -> (mean, std) of test AUC; ``base_slides``: the annotated slides the
    base runs kept. Budgets are settings of ``KEY`` that both modes ran, most labels first; a
    budget at or above ``base_slides`` keeps every annotated slide, so it is shown at that
    count. Empty when no budget was ablated."""
    settings = sorted({s for v in aucs for m, s in [split_variant(v)] if s.startswith(f"{KEY}=")
                       and m == a and join_variant(b, s) in aucs}, key=_count, reverse=True)
    if not settings:
        return []
    if a in aucs and b in aucs:
        settings.insert(0, "")
    points = []
    for s in settings:
        diff = {row.score: row.diff for row in pairs if row.diff.metric == "auc"
                and (row.diff.a, row.diff.b) == (join_variant(a, s), join_variant(b, s))}
        points.append(BudgetPoint(min(_count(s), base_slides) if s else base_slides, s,
                                  {a: aucs[join_variant(a, s)], b: aucs[join_variant(b, s)]}, diff))
    return points


def _count(setting: str) -> int:
    return int(setting.partition("=")[2])


def budget_markdown(points: list[BudgetPoint]) -> list[str]:
    if not points:
        return []
    modes = list(points[0].auc)
    lines = ["", f"Label budget ({modes[0]} − {modes[1]} against the slides that keep pixel "
             "labels; test AUC mean ± std over seeds; paired 95% bootstrap interval over "
             "test slides, and in the last column for a new draw of seeds as well):", "",
             "| labelled slides | " + " | ".join(f"{m} AUC" for m in modes) + " | " +
             " | ".join(f"Δ AUC, {SCORES[k]}" for k in SCORES) +
             f" | Δ AUC, {SCORES['slide']}, seeds redrawn |",
             "|---|" + "---|" * (len(modes) + len(SCORES) + 1)]
    for p in points:
        cells = [f"{mean:.3f} ± {std:.3f}" for mean, std in p.auc.values()]
        cells += [ci_cell(p.diff.get(k)) for k in SCORES]
        cells.append(ci_cell(p.diff.get("slide"), over_seeds=True))
        label = f"{p.slides} (all)" if not p.setting else str(p.slides)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def budget_figure(path: Path, points: list[BudgetPoint]) -> None:
    """Left: each mode's AUC (mean ± std over seeds); right: the paired difference with its
    interval, for θ2's slide score and θ1's own. Fewer labels to the right."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.8))
    left, right = fig.subplots(1, 2)
    xs = [p.slides for p in points]
    for mode in points[0].auc:
        left.errorbar(xs, [p.auc[mode][0] for p in points], [p.auc[mode][1] for p in points],
                      marker="o", capsize=3, label=mode)
    left.set_ylabel("test AUC, θ2 (mean ± std over seeds)")
    for i, (key, label) in enumerate(SCORES.items()):
        ds = [(p.slides, p.diff[key]) for p in points if key in p.diff]
        if not ds:
            continue
        shift = 0.04 * (i - 0.5)  # the two scores side by side at each budget
        x = [s * (1 + shift) for s, _ in ds]
        y = [d.estimate for _, d in ds]
        right.errorbar(x, y, [[d.estimate - d.low for _, d in ds],
                              [d.high - d.estimate for _, d in ds]],
                       marker="o", capsize=3, label=label)
    right.axhline(0.0, color="grey", lw=1, ls=":")
    names = list(points[0].auc)
    right.set_ylabel(f"Δ AUC, {names[0]} − {names[1]} (95% CI)")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(sorted(set(xs)), [str(x) for x in sorted(set(xs))])
        ax.minorticks_off()
        ax.invert_xaxis()
        ax.set_xlabel("slides with pixel labels")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
