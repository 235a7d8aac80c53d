"""A run directory: its frozen config, the refusal to overwrite, and ``--resume``."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mixsup import __version__
from mixsup.config.schema import Config, config_to_yaml, validate
from mixsup.errors import MixsupError
from mixsup.storage.atomic import write_text
from mixsup.storage.user_files import own_file, parse_yaml, read_text

log = logging.getLogger(__name__)

# For any file of a run folder that cannot be read back (the path is in the message).
RUN_FIX = ("this run folder is damaged: rerun without --resume into a new --out, or restore "
           "the file from a copy of the run")


def check_run(run_dir: str | Path, cfg: Config, resume: bool) -> Config:
    """The config a run in ``run_dir`` goes on with: ``cfg`` for a new run, the saved one on
    resume. Refuses to overwrite a run; creates nothing."""
    run_dir = Path(run_dir)
    stored = saved_config(run_dir)
    if stored is not None:
        if not resume:
            raise MixsupError("a run already exists here",
                              "pass --resume to continue it, or choose another --out", run_dir)
        if stored != cfg:
            log.warning("resuming with the run's saved config (%s); command-line settings "
                        "that differ are ignored", run_dir / "config.yaml")
        return stored
    if resume and run_dir.exists() and any(run_dir.iterdir()):
        raise MixsupError("cannot resume: no config.yaml in the run folder",
                          "start a new run with another --out", run_dir)
    return cfg


def saved_config(run_dir: str | Path) -> Config | None:
    """The config frozen in ``run_dir``, or None when it has none."""
    saved = Path(run_dir) / "config.yaml"
    if not saved.is_file():
        return None
    with own_file(saved, "config.yaml", RUN_FIX):
        doc = parse_yaml(read_text(saved, "config.yaml"), saved, "config.yaml")
        if not isinstance(doc, dict):
            raise MixsupError(f"config.yaml holds {'nothing' if doc is None else repr(doc)[:40]}"
                              ", not the run's settings", RUN_FIX, saved)
        return validate(doc)


ROUND_FOLDER = re.compile(r"round_(0|[1-9][0-9]{0,5})")


def round_folders(run_dir: str | Path) -> dict[int, Path]:
    """The run's ``round_<r>`` folders by round, in order; another folder named ``round_*``
    (``round_abc``, ``round_01``) is refused, naming it."""
    found: dict[int, Path] = {}
    for path in Path(run_dir).glob("round_*"):
        if not path.is_dir():
            continue
        match = ROUND_FOLDER.fullmatch(path.name)
        if match is None:
            raise MixsupError("not a round folder (mixsup names them round_0, round_1, ...)",
                              "rename or remove it", path)
        found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def create_run(run_dir: str | Path, cfg: Config) -> None:
    """Create ``run_dir`` with its frozen config (kept as it is on resume)."""
    saved = Path(run_dir) / "config.yaml"
    if not saved.is_file():
        saved.parent.mkdir(parents=True, exist_ok=True)
        write_text(saved, f"# mixsup {__version__}\n" + config_to_yaml(cfg))
