"""Helpers shared by the command groups: config options, loading, printing."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mixsup.config import MPP_RANGE, PRESETS, Config
from mixsup.storage.user_files import input_path_problem, output_path_problem

if TYPE_CHECKING:
    from mixsup.evaluate.metrics import SlideMetrics

Command = Callable[[argparse.Namespace], int]


class IntermixedParser(argparse.ArgumentParser):
    """Options and positionals in any order: ``predict RUN --out PRED a.svs``.

    argparse cannot intermix on a parser that has subcommands, so every leaf parser does it
    (subparsers inherit this class).
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back into this method
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def number_in(low: float, high: float, what: str) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] (nan, inf and 1e-300 are refused by
    argparse itself, with the usage line)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:  # False for NaN
            raise argparse.ArgumentTypeError(f"{what} must be between {low:g} and {high:g}, "
                                             f"not {text}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def text_arg(flag: str) -> Callable[[str], str]:
    """An argparse type for a file path or a model name: never empty."""
    def parse(raw: str) -> str:
        if not raw.strip():
            raise argparse.ArgumentTypeError(f"{flag} needs a value (got an empty one)")
        return raw

    return parse


def out_arg(raw: str) -> str:
    """An argparse type for an output folder: a path that can be made, checked before any
    work starts (``output_path_problem``); argparse's message names the flag."""
    problem = output_path_problem(raw)
    if problem:
        raise argparse.ArgumentTypeError(f"{raw!r}: {problem}")
    return raw


def in_arg(raw: str) -> str:
    """An argparse type for an input path (a slide, a dataset, a run, a config file): one it
    can reach or a missing one, which the command reports; a name too long for the file
    system, a symbolic link loop or a folder that cannot be entered is refused before any
    work (``input_path_problem``), and argparse's message names the flag."""
    problem = input_path_problem(raw)
    if problem:
        raise argparse.ArgumentTypeError(f"{raw!r}: {problem}")
    return raw


def file_arg(flag: str) -> Callable[[str], str]:
    """``in_arg`` for an optional file flag (``--weights``): an empty value is "``flag`` needs
    a value", as for ``text_arg``."""
    nonempty = text_arg(flag)

    def parse(raw: str) -> str:
        return in_arg(nonempty(raw))

    return parse


def plain_in_arg(raw: str) -> str:
    """``in_arg`` that also refuses what an output path may not be (``-``, a control
    character, a name that is not UTF-8): for ``rounds``, which writes into its run folder."""
    problem = input_path_problem(raw, plain_name=True)
    if problem:
        raise argparse.ArgumentTypeError(f"{raw!r}: {problem}")
    return raw


def int_in(low: int, high: int, flag: str) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]; the message names ``flag``."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{flag} takes an integer from {low} to {high} "
                                             f"(got {raw!r})")
        return value

    return parse


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not between 0 and 65535")
    return value


mpp_arg = number_in(*MPP_RANGE, "MPP (microns per pixel)")


def split_fractions(text: str) -> tuple[float, float, float]:
    """An argparse type: three shares (train, val, test), each in [0, 1], summing to 1."""
    share = number_in(0, 1, "a split's share")
    parts = [share(x) for x in text.split(",")]
    if len(parts) != 3 or abs(sum(parts) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"give three shares TRAIN,VAL,TEST that sum to 1, "
                                          f"not {text!r}")
    return parts[0], parts[1], parts[2]


def config_args(p: argparse.ArgumentParser, default_preset: str = "paper") -> None:
    p.add_argument("--preset", default=default_preset, choices=list(PRESETS),
                   help=f"settings preset (default: {default_preset})")
    p.add_argument("--config", action="append", default=[], metavar="FILE.yaml", type=in_arg,
                   help="YAML file overriding the preset (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one setting, e.g. --set tiling.mpp=1.0 (repeatable)")
    p.add_argument("--mpp", type=mpp_arg, default=None,
                   help="microns per pixel for slides whose metadata has none")


def cli_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides, with ``--mpp`` as ``reader.mpp``."""
    overrides = list(args.overrides)
    if getattr(args, "mpp", None) is not None:
        overrides.append(f"reader.mpp={args.mpp}")
    return overrides


def load_cfg(args: argparse.Namespace) -> Config:
    from mixsup.config import load_config

    return load_config(args.preset, args.config, cli_overrides(args))


def print_dataset(root: str | Path) -> None:
    from mixsup.labels.table import load_dataset

    ds = load_dataset(root)
    print(f"{'split':<6} {'slides':>6} {'pos':>5} {'neg':>5} {'unlab':>5} {'annot':>5}")
    for split, row in ds.summary().items():
        print(f"{split:<6} {row['slides']:>6} {row['positive']:>5} {row['negative']:>5} "
              f"{row['unlabelled']:>5} {row['annotated']:>5}")


def print_metrics(m: SlideMetrics) -> None:
    from mixsup.evaluate.metrics import REPORTED

    width = max(map(len, REPORTED))
    for k in REPORTED:
        v = getattr(m, k)
        print(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"
