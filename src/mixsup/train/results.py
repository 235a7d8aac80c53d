"""What training produces, as frozen records (JSON through ``mixsup.storage.records``): a misspelt
field is a type error, not a ``KeyError`` at the end of a long run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixsup.config.run import RUN_FIX
from mixsup.storage.records import read_record


@dataclass(frozen=True)
class PoolSizes:
    fine: int
    pseudo_positive: int
    hard_negative: int


@dataclass(frozen=True)
class NegativeFallback:
    mode: str
    size_after: int


@dataclass(frozen=True)
class PoolStats:
    """The three label pools of a round and the E-step rules' statistics behind them."""

    sizes: PoolSizes
    positive_slides_kept: int = 0  # slides with at least one patch >= T
    negative_slides_kept: int = 0
    hard_negative_new: int = 0  # this E-step's hard negatives, before any union or fallback
    hard_negative_shrank_from: int | None = None
    negative_fallback: NegativeFallback | None = None
    pseudo_positive_collapsed: bool = False
    pseudo_positive_pixel_fraction: float = 0.0
    pseudo_label_mean: float | None = None


@dataclass(frozen=True)
class MapStats:
    positive_slides_pixel_fraction: float
    negative_slides_pixel_fraction: float
    positive_patches_above_threshold: int = 0  # absent from the oldest run folders


@dataclass(frozen=True)
class RoundSummary:
    """``round_r/summary.json``."""

    round: int
    epochs: int
    losses: list[float]
    final_loss: float | None
    pools: PoolStats
    map_stats: MapStats
    seconds_train: float
    seconds_infer: float
    infer_patches_per_s: float
    collapsed: bool = False
    optimiser_steps: int | None = None  # θ1's steps in this round (None: before mixsup 0.2)

    @classmethod
    def read(cls, path: Path) -> RoundSummary:
        return read_record(cls, path, "round summary", RUN_FIX, _with_kept_slides)


@dataclass(frozen=True)
class ValScores:
    """Slide scores and labels on the val split, for the operating threshold."""

    scores: dict[str, float]
    labels: dict[str, int]


@dataclass(frozen=True)
class Stage2Summary:
    """``round_r/stage2/summary.json``: θ2 trained on round r's top-K patches."""

    round: int
    epoch_losses: list[float]
    train_curve: float  # mean of the epoch losses (NaN without epochs)
    train_loss: float  # final BCE of the training slides in eval mode
    train_slides: int
    val_loss: float | None = None
    val: ValScores | None = None

    @classmethod
    def read(cls, path: Path) -> Stage2Summary:
        return read_record(cls, path, "stage-2 summary", RUN_FIX, _with_val_scores)


@dataclass(frozen=True)
class MILSummary:
    """``mil/summary.json``: the image-level baseline."""

    epoch_losses: list[float]
    val: ValScores | None = None
    val_losses: list[float] | None = None  # per epoch (attention MIL)
    selected_epoch: int | None = None  # attention MIL: the epoch kept (1-based)

    @classmethod
    def read(cls, path: Path) -> MILSummary:
        return read_record(cls, path, "MIL summary", RUN_FIX, _with_val_scores)


def round_dir(run_dir: Path, r: int) -> Path:
    return run_dir / f"round_{r}"


def selected_val_scores(run_dir: Path, selected_round: int | None) -> ValScores | None:
    """The val slide scores behind a finished run's operating threshold: the selected round's
    θ2 (``selected_round``), else the MIL baseline's; None where the run kept none."""
    if selected_round is not None:
        path = round_dir(run_dir, selected_round) / "stage2" / "summary.json"
        return Stage2Summary.read(path).val if path.is_file() else None
    for folder in ("mil", "abmil"):
        if (run_dir / folder / "summary.json").is_file():
            return MILSummary.read(run_dir / folder / "summary.json").val
    return None


def _with_kept_slides(data: Any) -> Any:
    """Round summaries of mixsup 0.1.0 kept the threshold's slide counts in one key."""
    kept = data["pools"].pop("threshold_kept_slides", None)
    if kept is not None:
        data["pools"]["positive_slides_kept"] = kept["positive_slides"]
        data["pools"]["negative_slides_kept"] = kept["negative_slides"]
    return data


def _with_val_scores(data: Any) -> Any:
    """Summaries written before ``ValScores`` (run folders of mixsup 0.1.0) kept the val
    scores in two top-level keys."""
    if isinstance(data, dict) and "val_scores" in data:
        data["val"] = {"scores": data.pop("val_scores"), "labels": data.pop("val_labels")}
    return data


@dataclass(frozen=True)
class RoundRow:
    """One round in the run's summary (and in ``mixsup train``'s table)."""

    round: int
    final_loss: float | None
    pools: PoolSizes
    pseudo_positive_pixel_fraction: float
    map_stats: MapStats
    collapsed: bool
    stage2_train_curve: float | None
    stage2_train_loss: float | None
    stage2_val_loss: float | None
    optimiser_steps: int | None = None


@dataclass(frozen=True)
class Selection:
    round: int
    criterion: str
    values: dict[int, float]  # round -> criterion value
    tied: tuple[int, ...]  # rounds within the tolerance of the best, the chosen one included
    rule: str  # how the choice was made, for the log and summary.json


@dataclass(frozen=True)
class TrainSummary:
    """``summary.json`` of a finished run."""

    mode: str
    operating_threshold: float
    threshold_source: str
    bundle: str
    selected_round: int | None = None  # None: the image mode has no rounds
    selection: Selection | None = None
    rounds: list[RoundRow] = field(default_factory=list)
    mil_epoch_losses: list[float] | None = None
    skipped_slides: dict[str, str] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
