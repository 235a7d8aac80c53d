"""Command line: parse arguments, build the config, call the library, print. No logic here.
The top layer: may import any package (heavy ones inside the command functions)."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import traceback
import warnings

from mixsup import __version__
from mixsup.cli import data, qupath, scoring, staging, training, view
from mixsup.cli.common import Command, IntermixedParser
from mixsup.errors import MixsupError


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = IntermixedParser(
        prog="mixsup", description="Whole-slide-image classifiers from mixed supervision: a few "
        "pixel annotations plus many slide labels (Li et al.).")
    parser.add_argument("--version", action="version", version=f"mixsup {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Command] = {}
    for group in (data, training, scoring, staging, view, qupath):
        commands.update(group.register(sub))
    return parser, commands


def main(argv: list[str] | None = None, catch_unexpected: bool = False) -> int:
    """Run one command; its exit status. A ``MixsupError`` is one line and status 2. Any other
    exception propagates (tests call this, and must see the bug) unless ``catch_unexpected``,
    which the ``mixsup`` executable sets: the user then gets one line, never a traceback."""
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    try:
        return int(commands[args.command](args) or 0)
    except MixsupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            _no_space(exc.filename)
            return 2
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP) and exc.filename is not None:
            _unreachable(exc)  # a path made from one the user gave (DATA-truth, RUN/x.json)
            return 2
        if not catch_unexpected:
            raise
        return _unexpected(exc, args.verbose)
    except Exception as exc:  # a bug, or a bad input that no check caught yet
        if not catch_unexpected:
            raise
        return _unexpected(exc, args.verbose)


def entry() -> int:
    """The ``mixsup`` executable (and ``python -m mixsup``). Text that the terminal's encoding
    cannot show is escaped, not an error; a reader that closes the pipe ends the command
    quietly; a full disk under standard output is one error."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        status = main(catch_unexpected=True)
        sys.stdout.flush()
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        _no_space(None)
        return 2
    return status


def _no_space(filename: str | None) -> None:
    if filename is None:
        _quiet_stdout()
    print(f"error: {filename or 'standard output'}: no space left on the device. Fix: free "
          "some space, or write somewhere else", file=sys.stderr)


def _unreachable(exc: OSError) -> None:
    from mixsup.storage.user_files import os_problem

    print(f"error: {os.fsdecode(exc.filename)}: {os_problem(exc)}. Fix: pass shorter paths, "
          "or mend the symbolic links", file=sys.stderr)


def _closed_pipe() -> int:
    """The reader of standard output went away (``mixsup config | head``): stop quietly,
    with the status of a process ended by SIGPIPE."""
    _quiet_stdout()
    return 128 + signal.SIGPIPE


def _quiet_stdout() -> None:
    # What is still buffered cannot be written; point stdout at nothing so that the
    # interpreter's final flush does not raise again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


INTERNAL_ERROR = 70  # EX_SOFTWARE: not the user's error (2), but mixsup's


def _unexpected(exc: BaseException, verbose: bool) -> int:
    """One line instead of a traceback (which -v prints): the user cannot fix what mixsup
    should have refused with a clear message, so they are asked to report it."""
    if verbose:
        traceback.print_exception(exc)
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    print(f"error: unexpected {type(exc).__name__}{': ' + text if text else ''}. This is a "
          "bug in mixsup: please report it on the project's issue tracker with the command"
          f"{'' if verbose else ' and its output with -v (mixsup -v ...)'}", file=sys.stderr)
    return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(entry())
