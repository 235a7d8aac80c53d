"""A run that differs from a finished run only in stage 2 starts from that run's θ1 rounds.

θ1's rounds (stage 1: round 0, the EM rounds, their E-step maps) read no stage-2 setting, so
an experiment's stage-2 variants need not train them again. The finished run's round folders
are copied into the new run folder, without their stage-2 results (copied, not linked: a
resumed run may append to or rewrite files in place); ``train(resume=True)`` then reuses the
rounds and trains stage 2 with the new run's own settings.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from mixsup.config import Config
from mixsup.run import create_run, saved_config

log = logging.getLogger(__name__)
STAGE2_ONLY = ("stage2",)  # config sections in which two runs may differ and share θ1's rounds
STAGE1_SUMMARY = "stage1.json"
LOG = "log.jsonl"  # its stage-2 events stay behind
LEFT_BEHIND = ("stage2",)  # inside a round folder: what the new run makes itself


def shares_stage1(a: Config, b: Config) -> bool:
    """Whether two runs' θ1 rounds are the same computation: their configs agree outside
    ``STAGE2_ONLY``."""
    da, db = a.model_dump(), b.model_dump()
    for key in STAGE2_ONLY:
        da.pop(key, None)
        db.pop(key, None)
    # stage 1 runs round 0's E-step only where round selection may pick round 0
    return da == db and a.stage2.include_round0 == b.stage2.include_round0


def seed_rounds(source: Path, target: Path, cfg: Config) -> bool:
    """Give ``target``, a run folder not yet started, ``source``'s θ1 rounds and tiles, with
    ``cfg`` as its config. False, writing nothing, unless ``source`` is a finished run whose
    config shares stage 1 with ``cfg``. The folder appears whole or not at all."""
    if target.exists() and any(target.iterdir()):
        return False
    stored = saved_config(source) if (source / "summary.json").is_file() else None
    if stored is None or not shares_stage1(stored, cfg):
        return False
    partial = target.with_name(f".{target.name}.seeding")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for item in sorted(source.iterdir()):
        if item.is_dir() and (item.name.startswith("round_") or item.name == "tiles"):
            shutil.copytree(item, partial / item.name,
                            ignore=shutil.ignore_patterns(*LEFT_BEHIND))
        elif item.name == STAGE1_SUMMARY:
            shutil.copy2(item, partial / item.name)
        elif item.name == LOG:
            lines = item.read_text(errors="replace").splitlines(keepends=True)
            (partial / LOG).write_text("".join(
                line for line in lines if '"event": "stage2' not in line))
    create_run(partial, cfg)
    if target.exists():
        target.rmdir()
    partial.rename(target)
    log.info("θ1 rounds of %s reused: this run differs from it only in stage 2", source)
    return True
