"""A run starts from another finished computation's rounds where they are the same
computation, so that an experiment does no work twice.

- A run that differs from a finished run only in stage 2 starts from that run's θ1 rounds
  (round 0, the EM rounds, their E-step maps): θ1's rounds read no stage-2 setting.
- Mixed and pixel runs of one seed and setting share round 0: it is the same checkpoint by
  design (pixel mode passes through mixed's round 0), so the second run copies the first's.

The folders are copied, not linked (a resumed run may append to or rewrite files in place;
stored tilings, which are only ever replaced whole, are linked),
into the new run folder, which appears whole or not at all; ``train(resume=True)`` then
reuses what is there and trains the rest with the new run's own settings.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from mixsup.config import Config
from mixsup.config.run import create_run, saved_config
from mixsup.dataset.stain_reference import STAIN_FILE

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
    config shares stage 1 with ``cfg``."""
    stored = saved_config(source) if (source / "summary.json").is_file() else None
    if stored is None or not shares_stage1(stored, cfg):
        return False
    return _seed(source, target, cfg, lambda name: name.startswith("round_") or name == "tiles",
                 True, "θ1 rounds", "this run differs from it only in stage 2")


def seed_round0(source: Path, target: Path, cfg: Config) -> bool:
    """Give ``target``, a run folder not yet started, ``source``'s round 0 and tiles: the
    other segmenter mode's run of the same config (mode is no config setting), whose round 0
    has finished. False, writing nothing, otherwise."""
    stored = saved_config(source)
    if stored is None or stored != cfg or not (source / "round_0" / "summary.json").is_file():
        return False
    return _seed(source, target, cfg, lambda name: name in ("round_0", "tiles"), False,
                 "round 0", "mixed and pixel share it")


def _seed(source: Path, target: Path, cfg: Config, wanted: Callable[[str], bool],
          stage1_files: bool, what: str, why: str) -> bool:
    """``source``'s folders that ``wanted`` names (and with ``stage1_files`` its stage-1
    summary and log) into ``target`` with ``cfg``, whole or not at all."""
    if target.exists() and any(target.iterdir()):
        return False
    partial = target.with_name(f".{target.name}.seeding")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for item in sorted(source.iterdir()):
        if item.is_dir() and wanted(item.name):
            shutil.copytree(item, partial / item.name,
                            ignore=shutil.ignore_patterns(*LEFT_BEHIND, ".*.tmp-*"),
                            copy_function=_link if item.name == "tiles" else shutil.copy2)
        elif item.name == STAIN_FILE or (item.name == STAGE1_SUMMARY and stage1_files):
            shutil.copy2(item, partial / item.name)  # the rounds were trained on that stain
        elif item.name == LOG and stage1_files:
            lines = item.read_text(errors="replace").splitlines(keepends=True)
            (partial / LOG).write_text("".join(
                line for line in lines if '"event": "stage2' not in line))
    create_run(partial, cfg)
    if target.exists():
        target.rmdir()
    partial.rename(target)
    log.info("%s of %s reused: %s", what, source, why)
    return True


def seed_tiles(shared: Path, target: Path) -> int:
    """Link (or copy) into ``target`` each stored tiling file of ``shared`` that ``target``
    lacks; returns how many. Stored files are replaced whole, never edited in place, so a link
    is as safe as a copy. A tiling made with other settings or of another file is ignored by
    ``load_tileset`` (its key differs) and redone."""
    if not shared.is_dir():
        return 0
    target.mkdir(parents=True, exist_ok=True)
    added = 0
    for item in sorted(shared.iterdir()):
        dest = target / item.name
        if not item.is_file() or dest.exists() or item.name.startswith("."):
            continue
        _link(item, dest)
        added += 1
    return added


def _link(src: str | Path, dest: str | Path) -> None:
    """A stored tiling file into another folder: a hard link where the file system allows."""
    try:
        os.link(src, dest)
    except OSError:
        tmp = Path(dest).with_name(f".{Path(dest).name}.tmp-seed")
        shutil.copy2(src, tmp)
        tmp.replace(dest)
