"""``mixsup train``: the modes, from a dataset directory to a finished run folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixsup.atomic import write_json
from mixsup.config import Config
from mixsup.labels.table import load_dataset
from mixsup.run import open_run
from mixsup.train.context import prepare
from mixsup.train.figures import stage1_figures
from mixsup.train.rounds import clean_partial, run_stage1

log = logging.getLogger(__name__)
MODES = ("mixed", "pixel")


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]


def train(data_dir: str | Path, out: str | Path, cfg: Config, mode: str = "mixed",
          resume: bool = False, strict: bool = False, progress: bool = True) -> TrainResult:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    run_dir = Path(out)
    cfg = open_run(run_dir, cfg, resume)
    clean_partial(run_dir)
    data = load_dataset(data_dir)
    ctx = prepare(data, cfg, run_dir, strict=strict, progress=progress)
    rounds = cfg.stage1.rounds if mode == "mixed" else 0
    results = run_stage1(ctx, rounds=rounds)
    figures = stage1_figures(run_dir / "figures", ctx.train, ctx.train.labelled(),
                             [(res.round, res.maps) for res in results])
    summary = {
        "mode": mode,
        "rounds": [{"round": res.round, "final_loss": res.summary["final_loss"],
                    "pools": res.summary["pools"].get("sizes"),
                    "pseudo_positive_pixel_fraction":
                        res.summary["pools"].get("pseudo_positive_pixel_fraction"),
                    "map_stats": res.summary["map_stats"]} for res in results],
        "skipped_slides": ctx.train.skipped,
        "figures": [str(p.relative_to(run_dir)) for p in figures],
    }
    write_json(run_dir / "summary.json", summary)
    return TrainResult(run_dir, summary)
