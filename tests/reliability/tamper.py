"""Hypothesis strategies that damage the files of mixsup's own folders (a run folder, a bundle,
a feature folder), and the one check every fuzz test of a command makes: exit 0 or a clean
error (exit 2), never the catch-all, never a hang.

Shared by ``test_fuzz_run_folder.py``, ``test_fuzz_bundle_features.py``,
``test_fuzz_experiment_args.py`` and ``test_fuzz_paths.py``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from mixsup.cli import main


def budget(n: int) -> settings:
    """``n`` examples, no deadline: what one fuzz test may spend in the suite (the default
    profile, reproducible). A deeper profile (``--hypothesis-profile=long``) runs its own count;
    ``MIXSUP_FUZZ_EXAMPLES=N`` runs N fresh examples per test (a bug hunt)."""
    hunt = os.environ.get("MIXSUP_FUZZ_EXAMPLES")
    if hunt:
        return settings(max_examples=int(hunt), deadline=None, derandomize=False)
    current = settings.default.max_examples
    default = settings.get_profile("default").max_examples
    return settings(max_examples=n if current <= default else current, deadline=None)


# -- values a damaged file holds where mixsup wrote a number, a name or a record ---------------
HOSTILE = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1, 2, 3, 0.5, -0.0, 1e-300, 1e308, -1e308,
                     float("nan"), float("inf"), float("-inf"), 10**400, -(10**30), "", " ",
                     "x", "nan", "NaN", "0.5", "1" * 5000, "\x00", "a\nb", "é", "\ud800",
                     "/proc/nope/x", "mixed", "abmil", [], {}, [1], [[]], {"a": 1}, [None],
                     [float("nan")], {"0": 1}]),
    st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=8),
    st.recursive(st.none() | st.booleans() | st.integers(-9, 9) | st.text(max_size=3),
                 lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6))


def json_paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from json_paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from json_paths(v, (*prefix, i))


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def with_path(doc: Any, path: tuple) -> bool:
    try:
        _get(doc, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


@st.composite
def edited(draw: st.DrawFn, doc: Any, focus: tuple[tuple, ...] = ()) -> Any:
    """``doc`` with one value (anywhere, or at one of the ``focus`` paths where given) set to a
    hostile one, removed, or a stray key added beside it; or the whole document replaced."""
    doc = copy.deepcopy(doc)
    paths = [p for p in focus if with_path(doc, p)] or list(json_paths(doc))
    path = draw(st.sampled_from(paths))
    how = draw(st.sampled_from(["set", "set", "set", "drop", "add", "whole"]))
    if how == "whole" or not path:
        return draw(HOSTILE)
    parent, key = _get(doc, path[:-1]), path[-1]
    if how == "drop":
        del parent[key]
    elif how == "add" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=6))] = draw(HOSTILE)
    else:
        parent[key] = draw(HOSTILE)
    return doc


BAD_VALUES = (float("nan"), float("inf"), -1e30)


def damage_weight(weights: dict[str, Any], how: str, name: str, bad: float) -> None:
    """``weights[name]`` damaged in place: ``nan`` (its first value ``bad``), ``shape``,
    ``drop``, ``text`` or ``int``; ``extra`` adds a stray weight instead."""
    import torch

    if how == "nan":
        t = weights[name].clone().float()
        t.view(-1)[0] = bad
        weights[name] = t
    elif how == "shape":
        weights[name] = weights[name].reshape(-1)[:1].clone()
    elif how == "drop":
        del weights[name]
    elif how == "extra":
        weights["bogus.weight"] = torch.zeros(2)
    elif how == "text":
        weights[name] = "x"
    elif how == "int":
        weights[name] = weights[name].to(torch.int64)


def checkpoint_damage(state: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A checkpoint's dict with one weight NaN, reshaped, dropped, of another type, a stray
    weight added, or a top-level entry replaced by a hostile value."""

    weights = state["model"]
    names_ = sorted(weights)

    @st.composite
    def damage(draw: st.DrawFn) -> dict[str, Any]:
        new, w = dict(state), dict(weights)
        how = draw(st.sampled_from(["nan", "shape", "drop", "extra", "text", "int", "top",
                                    "top"]))
        name = draw(st.sampled_from(names_))
        if how != "top":
            damage_weight(w, how, name, draw(st.sampled_from(BAD_VALUES)))
        new["model"] = w
        if how == "top":
            key = draw(st.sampled_from(sorted(new)))
            new[key] = draw(HOSTILE)
        return new

    return damage()


def dump(doc: Any) -> bytes:
    """JSON as Python writes it (NaN and Infinity as bare words); a string that is not valid
    UTF-8 (a lone surrogate) is written escaped, as json.dumps does."""
    return json.dumps(doc).encode()


@st.composite
def damaged_bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    """The file as written, cut short, with one byte changed or a NUL put in, not UTF-8,
    empty, or other bytes altogether."""
    how = draw(st.sampled_from(["cut", "cut", "flip", "nul", "latin", "empty", "junk"]))
    if how == "cut" and raw:
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if how in ("flip", "nul") and raw:
        i = draw(st.integers(0, len(raw) - 1))
        byte = draw(st.integers(0, 255)) if how == "flip" else 0
        return raw[:i] + bytes([byte]) + raw[i + 1:]
    if how == "latin":
        return b"\xff\xfe" + raw[2:]
    if how == "junk":
        return draw(st.binary(max_size=64))
    return b""


def json_damage(raw: bytes, focus: tuple[tuple, ...] = ()) -> st.SearchStrategy[bytes]:
    """A JSON file of mixsup's, its values edited or its bytes damaged."""
    doc = json.loads(raw)
    return st.one_of(edited(doc, focus).map(dump), edited(doc, focus).map(dump),
                     damaged_bytes(raw))


# -- the invariant ------------------------------------------------------------------------
class Hang(Exception):
    """A command that ran past its time (a read that waits forever, a loop)."""


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise ``Hang`` in the main thread after ``seconds`` (a blocking open of a FIFO is
    interrupted too)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    before = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


class Started(Exception):
    """Raised in place of the work (training, tiling, prediction) once a command has passed
    every check: for the fuzz tests, the same as a correct result."""


def started(*args: Any, **kwargs: Any) -> None:
    raise Started


def run_cli(capsys: Any, argv: list[str], limit: int = 120) -> tuple[int | str, str]:
    """``mixsup argv`` in this process: (exit status, or "started" where the work was
    reached; standard error). Any exception other than a MixsupError propagates (so a bug
    fails the test); exit 2 must be one clean line; exit 1 only where every input was
    skipped (``predict``, ``tile``), and no other status is allowed."""
    try:
        with time_limit(limit):
            code: int | str = main(argv)
    except Started:
        code = "started"
    except SystemExit as exc:  # argparse's usage error (or --help)
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "bug in mixsup" not in err, err
    if code == 1:  # predict and tile: every input was skipped, each named on stdout
        assert "skipped " in out, (out, err)
        return code, err
    assert code in (0, 2, "started"), (code, err)
    if code == 2:
        assert "error:" in err, err
    return code, err


def error_line(err: str) -> str:
    """The ``error: ...`` line of standard error."""
    return next((line for line in err.splitlines() if line.startswith(("error:", "mixsup"))
                 and "error:" in line), err)


def names(err: str, *candidates: str | Path) -> bool:
    """Whether the error names one of the candidates (a file, a folder, a flag)."""
    return any(str(c) in err for c in candidates)


FEATURE_DAMAGE = ("nan", "inf", "other dim", "no rows", "huge")


def damage_feature_store(store: Any, how: str) -> None:
    """A zarr feature store (a slide's ``<id>.zarr`` group, open for writing) with its features
    damaged: a NaN, a column of inf, 3e38 everywhere, half its width, or no rows at all."""
    import numpy as np

    values = np.asarray(store["features"][:], np.float32)
    if how == "nan":
        values[0, 0] = np.nan
    elif how == "inf":
        values[:, 1] = np.inf
    elif how == "huge":
        values[:] = 3e38
    elif how == "other dim":
        values = values[:, : values.shape[1] // 2]
    else:
        values = values[:0]
        del store["coords"]
        store.create_array("coords", data=np.zeros((0, 2), np.int64))
    del store["features"]
    store.create_array("features", data=values)
    store.attrs["n_patches"] = len(values)
