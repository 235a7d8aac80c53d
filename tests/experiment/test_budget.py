"""The label-budget curve: which runs make each point, and the table and figure drawn from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mixsup.evaluate.paired import PairedDifference
from mixsup.experiment.budget import budget_figure, budget_markdown, budget_points
from mixsup.experiment.pairs import PairRow


def _diff(a: str, b: str, est: float, metric: str = "auc") -> PairedDifference:
    return PairedDifference(a, b, metric, est, est - 0.1, est + 0.1, (est,), 40, 100, 0.95,
                            est - 0.2, est + 0.2, 0.5)


AUCS = {"mixed": (0.90, 0.02), "pixel": (0.91, 0.02), "image": (0.6, 0.1),
        "mixed pixel-slides=3": (0.85, 0.03), "pixel pixel-slides=3": (0.80, 0.05),
        "mixed pixel-slides=1": (0.75, 0.05), "pixel pixel-slides=1": (0.60, 0.10),
        "mixed fine-tumour=0.5": (0.99, 0.0), "pixel fine-tumour=0.5": (0.1, 0.0)}
PAIRS = [PairRow("slide", _diff("mixed", "pixel", -0.01)),
         PairRow("theta1", _diff("mixed", "pixel", 0.04)),
         PairRow("slide", _diff("mixed", "pixel", 0.5, "specificity_at_full_sensitivity")),
         PairRow("slide", _diff("mixed", "image", 0.3)),
         PairRow("slide", _diff("mixed pixel-slides=3", "pixel pixel-slides=3", 0.05)),
         PairRow("slide", _diff("mixed pixel-slides=3", "mixed", -0.05)),
         PairRow("slide", _diff("mixed pixel-slides=1", "pixel pixel-slides=1", 0.15))]


def test_points_most_labels_first_with_only_mixed_minus_pixel_auc() -> None:
    points = budget_points(AUCS, PAIRS, base_slides=6)
    assert [(p.slides, p.setting) for p in points] == [
        (6, ""), (3, "pixel-slides=3"), (1, "pixel-slides=1")]
    assert points[0].auc == {"mixed": (0.90, 0.02), "pixel": (0.91, 0.02)}
    assert {k: d.estimate for k, d in points[0].diff.items()} == {"slide": -0.01, "theta1": 0.04}
    assert {k: d.estimate for k, d in points[1].diff.items()} == {"slide": 0.05}
    assert points[2].auc["pixel"] == (0.60, 0.10)


def test_a_budget_above_the_annotated_slides_sits_at_their_count() -> None:
    aucs = {"mixed pixel-slides=12": (0.9, 0.0), "pixel pixel-slides=12": (0.8, 0.0)}
    points = budget_points(aucs, [], base_slides=6)
    assert [(p.slides, p.setting) for p in points] == [(6, "pixel-slides=12")]


def test_no_budget_ablated_or_one_mode_missing_gives_no_curve() -> None:
    assert budget_points({"mixed": (0.9, 0.0), "pixel": (0.8, 0.0)}, PAIRS, 6) == []
    assert budget_points({"mixed pixel-slides=3": (0.9, 0.0)}, [], 6) == []
    assert budget_markdown([]) == []


def test_markdown_rows_and_cells() -> None:
    lines = budget_markdown(budget_points(AUCS, PAIRS, base_slides=6))
    rows = [ln for ln in lines if ln.startswith("| ") and ln[2].isdigit()]
    assert rows == [
        "| 6 (all) | 0.900 ± 0.020 | 0.910 ± 0.020 | -0.010 [-0.110, +0.090] | "
        "+0.040 [-0.060, +0.140] | -0.010 [-0.210, +0.190] |",
        "| 3 | 0.850 ± 0.030 | 0.800 ± 0.050 | +0.050 [-0.050, +0.150] | n/a | "
        "+0.050 [-0.150, +0.250] |",
        "| 1 | 0.750 ± 0.050 | 0.600 ± 0.100 | +0.150 [+0.050, +0.250] * | n/a | "
        "+0.150 [-0.050, +0.350] |"]


def test_figure_is_written(tmp_path: Path) -> None:
    path = tmp_path / "budget.png"
    budget_figure(path, budget_points(AUCS, PAIRS, base_slides=6))
    with Image.open(path) as im:
        assert im.size[0] > im.size[1] > 100
        assert np.asarray(im.convert("L")).std() > 0
    assert [p.name for p in tmp_path.iterdir()] == ["budget.png"]
