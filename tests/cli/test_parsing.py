"""Options and positionals mix in any order, for every command."""

from __future__ import annotations

import argparse

import pytest

from mixsup.cli import build_parser


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, (*path, name))


def _sample(action: argparse.Action) -> str:
    if action.choices:
        return str(list(action.choices)[-1])
    if action.type is not None:  # a number, three shares or a mode: in range for each option
        for text in ("1", "1,0,0", "3", "pixel"):
            try:
                action.type(text)
                return text
            except (ValueError, argparse.ArgumentTypeError):
                pass
    return f"v-{action.dest}"


def _pieces(parser: argparse.ArgumentParser) -> tuple[list[list[str]], list[list[str]]]:
    """Every option with a value, and every positional with its values."""
    options, positionals = [], []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        if not a.option_strings:
            n = 2 if a.nargs == "*" else 1
            positionals.append([f"{a.dest}{i}" for i in range(n)])
        elif a.nargs == 0:
            options.append([a.option_strings[-1]])
        else:
            options.append([a.option_strings[-1], _sample(a)])
    return options, positionals


def _interleave(first: list[list[str]], second: list[list[str]]) -> list[str]:
    out = []
    for i in range(max(len(first), len(second))):
        out += (first[i] if i < len(first) else []) + (second[i] if i < len(second) else [])
    return out


LEAVES = list(_leaves(build_parser()[0]))


def test_every_command_is_covered():
    names = {" ".join(path) for path, _ in LEAVES}
    assert {"train", "predict", "experiment", "stage train", "stage predict", "evaluate"} <= names


@pytest.mark.parametrize("path", [p for p, _ in LEAVES], ids=" ".join)
def test_options_and_positionals_in_any_order(path):
    parser = build_parser()[0]
    leaf = dict(LEAVES)[path]
    options, positionals = _pieces(leaf)
    flat = [x for piece in positionals for x in piece]
    orders = [
        flat + [x for piece in options for x in piece],  # positionals first
        [x for piece in options for x in piece] + flat,  # options first
        _interleave(options, positionals),
        _interleave(positionals, list(reversed(options))),
    ]
    parsed = [vars(parser.parse_args([*path, *argv])) for argv in orders]
    assert all(p == parsed[0] for p in parsed[1:]), orders


def test_predict_slides_after_out():
    parser = build_parser()[0]
    args = parser.parse_args(["predict", "RUN", "--out", "PRED", "a.svs", "b.svs"])
    assert (args.run, args.slides, args.out) == ("RUN", ["a.svs", "b.svs"], "PRED")


def test_unknown_options_are_still_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser()[0].parse_args(["predict", "RUN", "--out", "PRED", "--bogus", "a.svs"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
