"""Hypothesis over ``mixsup experiment``'s arguments (issue 39): ``--modes``, ``--seeds``,
``--ablate``, ``--jobs``, ``--folds`` and their company, parsed and checked without running
anything (the work after the checks is replaced by ``Started``). The invariant: a usage error
or a clean ``MixsupError`` (exit 2) that claims no folder, or a start with arguments that mean
what they say; never the catch-all.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mixsup.cli.training import modes_arg, seeds_arg  # noqa: E402
from mixsup.config import Config, load_config  # noqa: E402
from mixsup.errors import MixsupError  # noqa: E402
from mixsup.experiment.core import ABLATIONS, grid_variants  # noqa: E402
from mixsup.methods.registry import MODES  # noqa: E402
from tests.helpers import FAST  # noqa: E402
from tests.reliability.tamper import budget, run_cli, started  # noqa: E402

ODD = ["", " ", ",", ",,", "\x00", "é", "\n", "-", "--", "=", "nan", "inf", "1e3", "²", "٣",
       "0x1", "+1", "-0", "1_0", "1" * 5000, "null", "~", "#", "[1,2]", "a:b"]
MODES_TEXT = st.one_of(
    st.lists(st.sampled_from([*MODES, "Mixed", "mixed ", " pixel", "x", *ODD[:8]]),
             max_size=5).map(",".join),
    st.text(max_size=12))
SEEDS_TEXT = st.one_of(
    st.lists(st.one_of(st.integers(-5, 2**33).map(str), st.sampled_from(
        ["4294967295", "4294967296", "00", "0", *ODD])), max_size=4).map(",".join),
    st.text(max_size=8))
ABLATION_VALUES = st.one_of(st.sampled_from(
    ["1", "0", "-1", "3", "12", "0.5", "1.5", "2", "1e9", "10000000000", "confident", "soft",
     "average", "previous", "2-3-5", "1-1-1", "0-0-0", "1-2", "-1-2-3", "2--3-5", "true",
     "none", "macenko", "reinhard", "3,3", *ODD]), st.text(max_size=5))
ABLATE = st.one_of(
    st.builds(lambda key, values: f"{key}={','.join(values)}",
              st.sampled_from([*ABLATIONS, "", "bogus", "pixel_slides", "PIXEL-SLIDES"]),
              st.lists(ABLATION_VALUES, max_size=3)),
    st.text(max_size=12))
INTS = st.one_of(st.integers(-3, 300).map(str), st.sampled_from(ODD))


@budget(150)
@given(raw=MODES_TEXT)
def test_fuzz_modes_arg(raw):
    try:
        modes = modes_arg(raw)
    except (argparse.ArgumentTypeError, ValueError):  # argparse: a usage error, exit 2
        return
    assert modes and set(modes) <= set(MODES) and len(set(modes)) == len(modes)


@budget(150)
@given(raw=SEEDS_TEXT)
def test_fuzz_seeds_arg(raw):
    try:
        seeds = seeds_arg(raw)
    except (argparse.ArgumentTypeError, ValueError):
        return
    assert seeds and len(set(seeds)) == len(seeds)
    assert all(type(s) is int and 0 <= s < 2**32 for s in seeds)


@budget(60)
@given(ablations=st.lists(ABLATE, max_size=3),
       modes=st.lists(st.sampled_from(list(MODES)), min_size=1, max_size=4, unique=True),
       base=st.booleans())
def test_fuzz_ablation_specs_become_configs(ablations, modes, base):
    """What ``run_experiment`` checks first: each ``--ablate`` as variants, each variant's
    overrides as a config; a ValueError is the CLI's usage error."""
    try:
        variants = grid_variants(tuple(modes), tuple(ablations), base)
    except ValueError as exc:
        assert str(exc)
        return
    assert all(v.mode in MODES for v in variants)
    for v in variants:
        try:
            cfg = load_config("tiny", overrides=[*v.overrides, "seed=1"])
        except MixsupError as exc:
            assert "Traceback" not in str(exc)
            continue
        assert isinstance(cfg, Config)


@pytest.fixture
def checks_only(monkeypatch):
    """The experiment stops where its work would start: every check has run by then."""
    monkeypatch.setattr("mixsup.experiment.core.precompute_features", started)
    monkeypatch.setattr("mixsup.experiment.core.run_grid", started)


def _maybe(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.one_of(st.just([]), values.map(lambda v: [flag, v]))


ARGS = st.tuples(
    _maybe("--modes", MODES_TEXT), _maybe("--seeds", SEEDS_TEXT),
    st.lists(ABLATE, max_size=2).map(lambda specs: [a for s in specs for a in ("--ablate", s)]),
    _maybe("--jobs", INTS), _maybe("--folds", INTS),
    st.sampled_from([[], ["--no-base"], ["--no-share"], ["--per-center"]]),
    st.sampled_from([[], ["--launcher", "slurm"], ["--launcher", "slurm", "--partition", "p"],
                     ["--launcher", "submitit-local"], ["--launcher", "nope"]]),
    _maybe("--time-min", INTS), _maybe("--cpus-per-run", INTS),
    st.sampled_from([[], ["--set", "stage1.steps_per_epoch=null"], ["--set", "seed=-1"],
                     ["--set", "subset.pixel_slides=0"], ["--test-data", "DATA"],
                     ["--test-data", "NOWHERE"]]),
).map(lambda parts: [a for part in parts for a in part])


@budget(30)
@given(args=ARGS)
def test_fuzz_experiment_command_line(shapes_data, tmp_path, checks_only, capsys, args):
    out = Path(tempfile.mkdtemp(dir=tmp_path)) / "exp"  # a new one per example
    args = [str(shapes_data) if a == "DATA" else str(tmp_path / "nowhere") if a == "NOWHERE"
            else a for a in args]
    tiny = ["--preset", "tiny", *(a for s in FAST for a in ("--set", s))]
    code, err = run_cli(capsys, ["-q", "experiment", str(shapes_data), "--out", str(out),
                                 *tiny, *args])
    if code == 2 and "--folds" not in args:  # refused before the first folder is made
        assert not out.exists(), err
    if code == "started":
        assert "--folds" not in args or Path(out / "folds").exists() or out.exists()
