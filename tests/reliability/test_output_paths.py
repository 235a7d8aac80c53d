"""Output folders are checked where they enter, before any work: an empty path, ``-``, a
control character, a name that is not UTF-8 or too long, a place where nothing can be made.
One clean error naming the flag (exit 2), and nothing written. A slide whose file name is not
UTF-8 is tiled like any other (its tissue preview once crashed OpenCV)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mixsup.cli import main
from mixsup.config import load_config
from mixsup.slides.reader import open_slide
from mixsup.slides.tiling import tile_slide
from tests.reliability.builders import small_slide

COMMANDS = {  # a command line with {out} where its output folder goes
    "train": ["train", "DATA", "--out", "{out}"],
    "features": ["features", "DATA", "--out", "{out}"],
    "experiment": ["experiment", "DATA", "--out", "{out}"],
    "predict": ["predict", "RUN", "--out", "{out}"],
    "evaluate": ["evaluate", "P.csv", "--labels", "L.csv", "--out", "{out}"],
    "tile": ["tile", "DATA", "--out", "{out}"],
    "synth": ["synth", "{out}"],
    "export-qupath": ["export-qupath", "PRED", "--out", "{out}"],
}


def bad_outs(tmp: Path) -> dict[str, tuple[str, str]]:
    """name -> (the path, a word the error gives)."""
    a_file = tmp / "file"
    a_file.write_text("x")
    return {"empty": ("", "empty"), "dash": ("-", "not '-'"),
            "newline": (str(tmp / "a\nb"), "control character"),
            "not utf-8": (os.fsdecode(bytes(tmp) + b"/a\xff"), "UTF-8"),
            "long name": (str(tmp / ("x" * 300)), "too long"),
            "long path": ("/".join([str(tmp)] + ["y" * 200] * 24), "too long"),
            "a file": (str(a_file), "a file, not a folder"),
            "below a file": (str(a_file / "sub"), "is a file"),
            "under /proc": ("/proc/mixsup-out", "nothing can be created")}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unusable_output_folder_is_refused_before_any_work(command, tmp_path, capsys):
    before = sorted(tmp_path.rglob("*"))
    for name, (out, says) in bad_outs(tmp_path).items():
        before = sorted(tmp_path.rglob("*"))
        args = [a.replace("{out}", out) if a == "{out}" else a for a in COMMANDS[command]]
        with pytest.raises(SystemExit) as exit_:
            main(["-q", *args])
        err = capsys.readouterr().err
        assert exit_.value.code == 2, (command, name)
        assert says in err and ("--out" in err or "out" in err), (command, name, err)
        assert sorted(tmp_path.rglob("*")) == before, (command, name)  # nothing written


def test_a_slide_named_in_other_bytes_than_utf8_tiles(tmp_path):
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/sl\xe9des"))
    folder.mkdir()
    path = small_slide(folder / os.fsdecode(b"caf\xe9.tiff"))
    cfg = load_config("tiny")
    out = Path(os.fsdecode(bytes(tmp_path) + b"/tiles\xff"))
    with open_slide(path) as slide:
        tiles = tile_slide(slide, "s0", cfg.tiling, cfg.tissue, out)
    assert len(tiles) > 0
    assert (out / "s0_tissue.jpg").read_bytes()[:2] == b"\xff\xd8"  # a JPEG preview
