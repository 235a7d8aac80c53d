"""Issue 40: an input path that is too long for the file system (a 300-byte name, a
4,600-byte path) or that runs into a symbolic link loop, given to any command's input
argument, is one usage error naming the flag and the path (exit 2) while the arguments are
read: before any work, with nothing written. ``rounds`` also refuses a run folder or answer
key that is empty, ``-``, holds a newline or is not UTF-8, and never creates a missing run
folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mixsup.cli import main

# Every input argument of every command (from `mixsup --help` and each command's --help), as
# a command line with {in} in its place; {out} is a folder that can be made.
COMMANDS = {
    "info SLIDE": ["info", "{in}"],
    "synth --pcam": ["synth", "{out}", "--kind", "pcam", "--pcam", "{in}"],
    "validate DATA": ["validate", "{in}"],
    "validate --config": ["validate", "DATA", "--config", "{in}"],
    "tile DATA": ["tile", "{in}", "--out", "{out}"],
    "annotations SOURCE": ["annotations", "{in}", "{out}/a.geojson"],
    "annotations --slide": ["annotations", "a.xml", "{out}/a.png", "--slide", "{in}"],
    "train DATA": ["train", "{in}", "--out", "{out}"],
    "train --weights": ["train", "DATA", "--out", "{out}", "--weights", "{in}"],
    "train --config": ["train", "DATA", "--out", "{out}", "--config", "{in}"],
    "features DATA": ["features", "{in}", "--out", "{out}"],
    "features --weights": ["features", "DATA", "--out", "{out}", "--weights", "{in}"],
    "experiment DATA": ["experiment", "{in}", "--out", "{out}"],
    "experiment --test-data": ["experiment", "DATA", "--out", "{out}", "--test-data", "{in}"],
    "rounds RUN": ["rounds", "{in}", "--data", "DATA"],
    "rounds --data": ["rounds", "RUN", "--data", "{in}"],
    "rounds --truth": ["rounds", "RUN", "--data", "DATA", "--truth", "{in}"],
    "config --config": ["config", "--config", "{in}"],
    "predict RUN": ["predict", "{in}", "--out", "{out}"],
    "predict SLIDES": ["predict", "RUN", "a.svs", "{in}", "--out", "{out}"],
    "predict --data": ["predict", "RUN", "--data", "{in}", "--split", "test", "--out", "{out}"],
    "predict --config": ["predict", "RUN", "--out", "{out}", "--config", "{in}"],
    "predict --features": ["predict", "RUN", "--out", "{out}", "--features", "{in}"],
    "evaluate PREDICTIONS": ["evaluate", "{in}", "--labels", "L.csv", "--out", "{out}"],
    "evaluate --labels": ["evaluate", "P.csv", "--labels", "{in}", "--out", "{out}"],
    "stage train RUN": ["stage", "train", "{in}", "--data", "DATA"],
    "stage train --data": ["stage", "train", "RUN", "--data", "{in}"],
    "stage predict RUN": ["stage", "predict", "{in}", "--data", "DATA", "--out", "{out}"],
    "stage predict --data": ["stage", "predict", "RUN", "--data", "{in}", "--out", "{out}"],
    "stage evaluate PREDICTIONS": ["stage", "evaluate", "{in}", "--labels", "L", "--out",
                                   "{out}"],
    "stage evaluate --labels": ["stage", "evaluate", "P", "--labels", "{in}", "--out", "{out}"],
    "view PRED": ["view", "{in}"],
    "view --data": ["view", "PRED", "--data", "{in}"],
    "export-qupath PRED": ["export-qupath", "{in}", "--out", "{out}"],
}
FLAG_OF = {"SLIDE": "slide", "SLIDES": "slides", "DATA": "data", "SOURCE": "source",
           "RUN": "run", "PREDICTIONS": "predictions", "PRED": "pred"}


def bad_input(tmp: Path, kind: str) -> Path:
    if kind == "long name":
        return tmp / ("x" * 300)
    if kind == "long path":
        return Path("/".join([str(tmp)] + ["y" * 200] * 23))  # over 4,600 bytes
    a, b = tmp / "loop_a", tmp / "loop_b"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _listing(root: Path) -> list[str]:
    """Everything under ``root``, links not followed (a loop is listed, not entered)."""
    return sorted(os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files)


def _usage_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main(["-q", *argv])
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    assert "Traceback" not in err and "error:" in err
    return err


def test_every_command_with_an_input_path_is_listed():
    from mixsup.cli import build_parser

    parser, _ = build_parser()
    listed = {line.split()[0] for line in COMMANDS}
    without = {"demo"}  # writes only
    assert set(parser._subparsers._group_actions[0].choices) - without == listed


@pytest.mark.parametrize("kind", ["long name", "long path", "symlink loop"])
@pytest.mark.parametrize("slot", sorted(COMMANDS))
def test_an_unreachable_input_path_is_a_usage_error(slot, kind, tmp_path, capsys):
    bad = bad_input(tmp_path, kind)
    out = str(tmp_path / "out")
    argv = [str(bad) if a == "{in}" else a.replace("{out}", out) for a in COMMANDS[slot]]
    before = _listing(tmp_path)
    err = _usage_error(capsys, argv)
    flag = slot.split()[-1]
    assert str(bad) in err, err
    assert f"argument {FLAG_OF.get(flag, flag)}" in err, err
    assert ("too long" if kind != "symlink loop" else "symbolic link loop") in err
    assert _listing(tmp_path) == before  # nothing written


def test_a_loop_on_the_way_to_a_file_is_refused_too(tmp_path, capsys):
    bad = bad_input(tmp_path, "symlink loop") / "slides.csv"
    err = _usage_error(capsys, ["evaluate", "P.csv", "--labels", str(bad), "--out",
                                str(tmp_path / "out")])
    assert str(bad) in err and "symbolic link loop" in err


def test_a_missing_input_is_still_the_commands_own_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.svs")]) == 2
    assert "nope.svs" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["RUN", "--truth"])
@pytest.mark.parametrize("name,says", [
    ("empty", "empty"), ("dash", "not '-'"), ("newline", "control character"),
    ("not utf-8", "UTF-8"),
])
def test_rounds_refuses_names_it_cannot_use(flag, name, says, tmp_path, capsys):
    value = {"empty": "", "dash": "-", "newline": str(tmp_path / "a\nb"),
             "not utf-8": os.fsdecode(bytes(tmp_path) + b"/run\xff")}[name]
    argv = ["rounds", value, "--data", str(tmp_path)] if flag == "RUN" else \
        ["rounds", str(tmp_path), "--data", str(tmp_path), "--truth", value]
    before = _listing(tmp_path)
    err = _usage_error(capsys, argv)
    assert says in err and f"argument {'run' if flag == 'RUN' else flag}" in err, err
    assert _listing(tmp_path) == before


def test_rounds_never_creates_a_missing_run_folder(tmp_path, capsys):
    run = tmp_path / "no" / "such" / "run"
    assert main(["rounds", str(run), "--data", str(tmp_path)]) == 2
    assert "not a training run" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_a_path_made_too_long_from_a_good_one_is_one_error(tmp_path, capsys):
    """DATA's own name fits, DATA-truth (the default answer key) does not: the error names the
    path the command made, exit 2, never the catch-all."""
    run = tmp_path / "run"
    (run / "round_1").mkdir(parents=True)
    (run / "config.yaml").write_text("preset: tiny\n")
    data = tmp_path / ("d" * 252)
    data.mkdir()
    assert main(["rounds", str(run), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data}-truth" in err and "too long" in err and "bug in mixsup" not in err
