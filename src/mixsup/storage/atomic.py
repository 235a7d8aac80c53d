"""Atomic file writes: write to a temporary sibling, fsync, then rename over the target.

A crash mid-write leaves at most a stray ``*.tmp-*`` file, never a truncated file under the
final name, so a later run can trust any file that exists.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mixsup.errors import MixsupError


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success."""
    target = Path(target)
    try:  # an unusable folder (a file in the way, /proc/...) is the user's error too
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", suffix=suffix,
                                   dir=target.parent)
    except OSError as exc:
        raise _explain(exc, target) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise _explain(exc, target) from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(target: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    with atomic_path(target) as tmp, open(tmp, mode) as fh:
        yield fh


def write_text(target: str | Path, text: str) -> None:
    with atomic_open(target, "w") as fh:
        fh.write(text)


def write_json(target: str | Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def as_written(obj: Any) -> Any:
    """``obj`` as ``write_json`` writes it and ``json.load`` reads it back."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _explain(exc: OSError, target: Path) -> MixsupError:
    if exc.errno == errno.ENOSPC:
        return MixsupError("no space left on the device while writing", "free disk space or "
                           "choose another --out; the previous file was left untouched", target)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return MixsupError("permission denied while writing", "make the output folder writable "
                           "or choose another --out; the previous file was left untouched", target)
    return MixsupError(f"could not write ({exc.strerror or exc})", "check the output folder",
                       target)


def remove_partial(root: Path) -> None:
    """Drop the temporary files and directories that a crash left under ``root``."""
    for tmp in Path(root).rglob(".*.tmp-*"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
