"""Command line: parse arguments, build the config, call the library, print. No logic here."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from mixsup import __version__
from mixsup.cli import data, scoring, staging, training, view
from mixsup.cli.common import Command, IntermixedParser
from mixsup.errors import MixsupError


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = IntermixedParser(
        prog="mixsup", description="Whole-slide-image classifiers from mixed supervision: a few "
        "pixel annotations plus many slide labels (Li et al.).")
    parser.add_argument("--version", action="version", version=f"mixsup {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Command] = {}
    for group in (data, training, scoring, staging, view):
        commands.update(group.register(sub))
    return parser, commands


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
