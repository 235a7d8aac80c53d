"""Hypothesis over odd paths on every command that takes one (issue 40): empty, ``-``, a
newline or another control character, bytes that are not UTF-8, a name or a path too long,
``..`` chains, a path through a regular file, a FIFO, a folder where a file is read and a file
where a folder is, a symlink loop, a device. Each path argument of every command (listed from
the parser: ``test_every_path_argument_is_fuzzed`` fails when a new one is not) gets one odd
path while the others stay valid. The invariant: exit 2 with one clean line, or exit 0 with a
correct result (an input that exists; an output inside the sandbox); never the catch-all,
never a wait, and nothing written outside the test's folder.

The work after the checks (training, tiling, serving) is replaced by ``Started``: a command
that gets there has accepted its paths.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.helpers import FAST  # noqa: E402
from tests.reliability.builders import prediction_folder, small_slide  # noqa: E402
from tests.reliability.tamper import Started, budget, run_cli, started  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = ["--preset", "tiny", *(a for s in FAST for a in ("--set", s))]

# command -> (its command line, {placeholder: (the parser's dest, "in" | "out")}). An optional
# slot's flag and placeholder are left out when that slot is not the one fuzzed and it has no
# valid value (OPTIONAL).
COMMANDS: dict[str, tuple[list[str], dict[str, tuple[str, str]]]] = {
    "info": (["info", "SLIDE"], {"SLIDE": ("slide", "in")}),
    "synth": (["synth", "OUT", "--n-slides", "2", "--size", "256", "--compression", "zlib",
               "--truth", "TRUTH_OUT"],
              {"OUT": ("out", "out"), "TRUTH_OUT": ("truth", "out")}),
    "synth pcam": (["synth", "OUT", "--kind", "pcam", "--pcam", "PCAM"],
                   {"PCAM": ("pcam", "in")}),
    "validate": (["validate", "DATA", "--fast", "--config", "CFG"],
                 {"DATA": ("data", "in"), "CFG": ("config", "in")}),
    "tile": (["tile", "DATA", "--out", "OUT", "--config", "CFG"],
             {"DATA": ("data", "in"), "OUT": ("out", "out"), "CFG": ("config", "in")}),
    "annotations": (["annotations", "ANN", "DEST", "--slide", "SLIDE", "--config", "CFG"],
                    {"ANN": ("source", "in"), "DEST": ("dest", "out"),
                     "SLIDE": ("slide", "in"), "CFG": ("config", "in")}),
    "train": (["train", "DATA", "--out", "OUT", "--weights", "WEIGHTS", "--config", "CFG",
               *TINY],
              {"DATA": ("data", "in"), "OUT": ("out", "out"), "WEIGHTS": ("weights", "in"),
               "CFG": ("config", "in")}),
    "features": (["features", "DATA", "--out", "OUT", "--weights", "WEIGHTS", "--config",
                  "CFG", *TINY],
                 {"DATA": ("data", "in"), "OUT": ("out", "out"), "WEIGHTS": ("weights", "in"),
                  "CFG": ("config", "in")}),
    "experiment": (["experiment", "DATA", "--out", "OUT", "--test-data", "TEST_DATA",
                    "--config", "CFG", *TINY],
                   {"DATA": ("data", "in"), "OUT": ("out", "out"),
                    "TEST_DATA": ("test_data", "in"), "CFG": ("config", "in")}),
    "rounds": (["rounds", "RUN", "--data", "DATA", "--truth", "TRUTH"],
               {"RUN": ("run", "in"), "DATA": ("data", "in"), "TRUTH": ("truth", "in")}),
    "config": (["config", "--config", "CFG"], {"CFG": ("config", "in")}),
    "demo": (["demo", "--out", "OUT"], {"OUT": ("out", "out")}),
    "predict": (["predict", "RUN", "SLIDE", "--out", "OUT", "--config", "CFG"],
                {"RUN": ("run", "in"), "SLIDE": ("slides", "in"), "OUT": ("out", "out"),
                 "CFG": ("config", "in")}),
    "predict data": (["predict", "RUN", "--data", "DATA", "--split", "test", "--out", "OUT"],
                     {"DATA": ("data", "in")}),
    "evaluate": (["evaluate", "PREDS", "--labels", "LABELS", "--out", "OUT"],
                 {"PREDS": ("predictions", "in"), "LABELS": ("labels", "in"),
                  "OUT": ("out", "out")}),
    "stage train": (["stage", "train", "RUN", "--data", "DATA"],
                    {"RUN": ("run", "in"), "DATA": ("data", "in")}),
    "stage predict": (["stage", "predict", "RUN", "--data", "DATA", "--out", "OUT"],
                      {"RUN": ("run", "in"), "DATA": ("data", "in"), "OUT": ("out", "out")}),
    "stage evaluate": (["stage", "evaluate", "PREDS", "--labels", "LABELS", "--out", "OUT"],
                       {"PREDS": ("predictions", "in"), "LABELS": ("labels", "in"),
                        "OUT": ("out", "out")}),
    "view": (["view", "PRED", "--data", "DATA"], {"PRED": ("pred", "in"),
                                                  "DATA": ("data", "in")}),
    "export-qupath": (["export-qupath", "PRED", "--out", "OUT"],
                      {"PRED": ("pred", "in"), "OUT": ("out", "out")}),
}
OPTIONAL = {"WEIGHTS", "TEST_DATA", "TRUTH_OUT", "PCAM"}
# Options that name a file or a folder (every positional argument does).
PATH_OPTIONS = {"out", "data", "labels", "truth", "slide", "config", "weights", "test_data",
                "pcam"}


def _path_arguments() -> set[tuple[str, str]]:
    """(command, dest) of every path argument the parser knows."""
    import argparse

    from mixsup.cli import build_parser

    found: set[tuple[str, str]] = set()

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, p in action.choices.items():
                    walk(p, f"{name} {sub}".strip())
            elif (not action.option_strings and action.dest != "help") or \
                    action.dest in PATH_OPTIONS:
                found.add((name, action.dest))

    walk(build_parser()[0], "")
    return found


def test_every_path_argument_is_fuzzed():
    fuzzed = {(name.split(" pcam")[0].split(" data")[0], dest)
              for name, (_, slots) in COMMANDS.items() for dest, _ in slots.values()}
    missing = _path_arguments() - fuzzed
    assert not missing, f"add these path arguments to COMMANDS: {sorted(missing)}"


# -- the odd paths ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(shapes_data, trained, tmp_path_factory) -> dict[str, str]:
    """Valid values for every placeholder, and the special files the odd paths point at."""
    root = tmp_path_factory.mktemp("fuzz_paths")
    run = root / "run"  # rounds writes map_quality.json into its run: a copy
    shutil.copytree(trained.run_dir, run, ignore=shutil.ignore_patterns("figures"))
    slide = small_slide(root / "s0.tiff")
    ann = root / "ann.geojson"
    ann.write_text(json.dumps({"type": "Feature", "properties": {"name": "Tumor"},
                               "geometry": {"type": "Polygon", "coordinates": [
                                   [[10, 10], [200, 10], [200, 200], [10, 10]]]}}))
    cfg = root / "cfg.yaml"
    cfg.write_text("runtime:\n  num_workers: 0\n")
    pred = prediction_folder(root / "pred", slide)
    (root / "labels.csv").write_text("slide_id,label\ns0,1\ns1,0\n")
    (root / "stage.csv").write_text("patient,stage\np0,pN0\n")
    from mixsup.synth.layout import answer_key

    return {"SLIDE": str(slide), "ANN": str(ann), "CFG": str(cfg), "DATA": str(shapes_data),
            "RUN": str(run), "PRED": str(pred), "PREDS": str(pred / "predictions.csv"),
            "LABELS": str(root / "labels.csv"), "TRUTH": str(answer_key(shapes_data))}


@pytest.fixture
def sandbox(tmp_path, monkeypatch) -> Iterator[Path]:
    """The working folder, five levels down, so that a chain of up to five ``..`` stays
    inside the test's folder; beside it a file, a folder, a FIFO and symlinks."""
    for name in ("FILE", "FILE.csv"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "DIR").mkdir()
    (tmp_path / "DIR.tiff").mkdir()
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "FIFO")
        os.mkfifo(tmp_path / "FIFO.geojson")
    os.symlink("LOOP", tmp_path / "LOOP")
    os.symlink(tmp_path / "nothing", tmp_path / "DANGLING")
    cwd = tmp_path / "a" / "b" / "c" / "d" / "e"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    yield tmp_path


@pytest.fixture
def no_work(monkeypatch):
    """Training, feature extraction, tiling, experiments, the demo and the viewer's server stop
    where their work would start."""
    for target in ("mixsup.train.api.prepare", "mixsup.dataset.tiles.slide_set",
                   "mixsup.dataset.tiles.tile_dataset",
                   "mixsup.experiment.core.precompute_features",
                   "mixsup.experiment.core.run_grid", "mixsup.view.server.make_server",
                   "mixsup.synth.pcam.write_dataset"):
        monkeypatch.setattr(target, started)
    monkeypatch.setattr("mixsup.view.assets.osd_files", lambda require=False: None)
    from mixsup.synth import shapes

    make_shapes = shapes.make_shapes

    def small_shapes(*args, **kwargs):  # `synth --n-slides 2` runs; the demo's 20 do not
        if kwargs.get("n_slides", 20) > 2:
            raise Started
        return make_shapes(*args, **kwargs)

    monkeypatch.setattr(shapes, "make_shapes", small_shapes)


# A symlink loop or a link to nothing as an output folder: storage/user_files.py's
# output_path_problem (another change) does not refuse them yet, and mkdir then raises
# FileExistsError; test_a_link_to_nothing_as_an_output_folder below.
LINKS = ("LOOP", "DANGLING")


# Paths outside the test's folder that are only ever read (mixsup runs as root in some
# containers: an output path such as / or /etc would be written into).
READ_ONLY = ("/", "/etc", "/dev/null", "/dev/zero", "/proc/self/mem")


def _confined(path: str, tmp: Path) -> str:
    """An output path kept inside the test's folder: an absolute one elsewhere (but a place
    where nothing can be made, /proc/nope/x) is moved below ``tmp``."""
    if path.startswith("/") and not path.startswith(str(tmp)) and path != "/proc/nope/x":
        return str(tmp / path.lstrip("/"))
    return path


def _odd(tmp: Path, direction: str = "in") -> st.SearchStrategy[str]:
    special = [str(tmp / n) for n in ("FILE", "FILE.csv", "DIR", "DIR.tiff", "FIFO",
                                      "FIFO.geojson", "LOOP", "DANGLING")
               if direction == "in" or n not in LINKS]
    paths = st.one_of(
        st.sampled_from([
            "", " ", "-", "--", "-x", ".", "..", "~", "$HOME", "*", "a\nb", "a\rb", "\t",
            "x\x01y", "x\x7f", os.fsdecode(b"caf\xe9"), os.fsdecode(bytes(tmp) + b"/n\xff"),
            "x" * 300, "/".join([str(tmp)] + ["y" * 200] * 24), "/proc/nope/x", "nul", "con",
            "é.tiff", "s p a c e", str(tmp / "FILE" / "sub"), str(tmp / "FILE.csv" / "x.csv"),
            str(tmp / "LOOP" / "y"), str(tmp / "DIR" / "nothing.csv"), *special, *special,
            *(READ_ONLY if direction == "in" else ())]),
        st.integers(1, 5).map(lambda k: "../" * k + "nowhere"),
        st.integers(1, 5).map(lambda k: "../" * k + "FILE"),
        st.text(max_size=12))
    return paths if direction == "in" else paths.map(lambda p: _confined(p, tmp))


def _outside(tmp: Path) -> dict[Path, set[str]]:
    """What the folders around the test's folder hold (where a bad path could write)."""
    # not /tmp: other programs write there
    places = [tmp.parent, REPO, Path.home(), Path("/"), Path("/etc")]
    return {p: set(os.listdir(p)) for p in places if p.is_dir()}


def _argv(command: str, slot: str, odd: str, world: dict[str, str], out: Path) -> list[str]:
    """The command line with ``odd`` in ``slot``, valid values elsewhere, a new folder for
    every output and the optional slots left out."""
    argv, slots = COMMANDS[command]
    line: list[str] = []
    for arg in argv:
        if arg == slot:
            line.append(odd)
        elif arg in OPTIONAL:
            line.pop()  # and its flag
        elif arg in slots and slots[arg][1] == "out":
            line.append(str(out / arg.lower()))
        else:
            line.append(world.get(arg, arg))
    return ["-q", *line]


def _exists(path: str) -> bool:
    try:
        return os.path.lexists(path)
    except (ValueError, OSError):  # a NUL in it
        return False


@pytest.mark.parametrize("command", sorted(COMMANDS))
@budget(15)
@given(data=st.data())
def test_fuzz_odd_paths(command, world, sandbox, no_work, capsys, data):
    slot = data.draw(st.sampled_from(sorted(COMMANDS[command][1])), label="argument")
    odd = data.draw(_odd(sandbox, COMMANDS[command][1][slot][1]), label="path")
    out = sandbox / "outs" / f"{len(os.listdir(sandbox)):04d}"
    argv = _argv(command, slot, odd, world, out)
    before = _outside(sandbox)
    sys.stderr.reconfigure(errors="backslashreplace")  # as the mixsup executable does
    sys.stdout.reconfigure(errors="backslashreplace")
    code, err = run_cli(capsys, argv, limit=60)
    new = {p / n for p, names in _outside(sandbox).items() for n in names - before.get(p, set())}
    assert not new, f"{argv} wrote outside the test's folder: {sorted(new)}"
    direction = COMMANDS[command][1][slot][1]
    if code in (0, "started") and direction == "in":
        assert _exists(odd), (argv, code, err)


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("command", ["train", "features", "tile", "evaluate"])
def test_a_link_to_nothing_as_an_output_folder(command, link, world, sandbox, no_work, capsys):
    argv = _argv(command, "OUT", str(sandbox / link), world, sandbox / "outs")
    code, err = run_cli(capsys, argv, limit=60)
    assert code == 2 and link in err, err
