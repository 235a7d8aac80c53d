"""Errors that name the offending file and say how to fix it."""

from __future__ import annotations

from pathlib import Path


class MixsupError(Exception):
    """A user-facing error: the CLI prints it on one line and exits non-zero."""

    def __init__(self, what: str, fix: str = "", path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.what = what
        self.fix = fix
        head = f"{self.path}: {what}" if self.path else what
        super().__init__(f"{head}. Fix: {fix}" if fix else head)


class SlideReadError(MixsupError):
    """A slide that cannot be opened or read."""


class MissingMPPError(MixsupError):
    """A slide whose metadata gives no microns-per-pixel."""


class AnnotationError(MixsupError):
    """An annotation file that cannot be parsed or holds invalid geometry."""


class DatasetError(MixsupError):
    """A dataset directory whose slides.csv or annotations are inconsistent."""


class TissueFileError(MixsupError):
    """A slide's tissue outlines (``tissue.source=geojson``) that cannot be read or do not fit
    the slide: the whole command stops, where a bad slide is only skipped."""


class ConfigError(MixsupError):
    """A configuration with unknown keys or out-of-range values."""


class ModelOutputError(MixsupError):
    """A model that gives NaN or infinite outputs: every input would get them, so the work
    stops instead of skipping the input."""
