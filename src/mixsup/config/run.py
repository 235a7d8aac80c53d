"""A run directory: its frozen config, the refusal to overwrite, and ``--resume``."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from mixsup import __version__
from mixsup.config.schema import Config, config_to_yaml, validate
from mixsup.errors import MixsupError
from mixsup.storage.atomic import write_text

log = logging.getLogger(__name__)


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
    return validate(yaml.safe_load(saved.read_text())) if saved.is_file() else None


def create_run(run_dir: str | Path, cfg: Config) -> None:
    """Create ``run_dir`` with its frozen config (kept as it is on resume)."""
    saved = Path(run_dir) / "config.yaml"
    if not saved.is_file():
        saved.parent.mkdir(parents=True, exist_ok=True)
        write_text(saved, f"# mixsup {__version__}\n" + config_to_yaml(cfg))
