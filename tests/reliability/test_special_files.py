"""A FIFO, a folder or a device given where a file is read: one error naming it, at once,
never a wait."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from mixsup.cli import main


@pytest.fixture
def fifo(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    return path


def _refused_quickly(capsys, argv: list[str], named: Path) -> None:
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():  # unblock the reader the fix was meant to avoid, then fail
        with open(named, "wb"):
            pass
        pytest.fail(f"{argv[0]} waited on {named}")
    assert result == [2]
    err = capsys.readouterr().err
    assert str(named) in err and "not a regular file" in err


def test_a_fifo_is_refused_by_evaluate_and_config(fifo, tmp_path, capsys):
    labels = tmp_path / "slides.csv"
    labels.write_text("slide_id,label\na,1\n")
    _refused_quickly(capsys, ["evaluate", str(fifo), "--labels", str(labels), "--out",
                              str(tmp_path / "r")], fifo)
    _refused_quickly(capsys, ["config", "--config", str(fifo)], fifo)


def test_a_fifo_is_refused_as_an_annotation(fifo, tmp_path, capsys):
    src = fifo.with_suffix(".geojson")
    os.rename(fifo, src)
    _refused_quickly(capsys, ["annotations", str(src), str(tmp_path / "out.geojson")], src)


def test_a_folder_is_refused_where_a_file_is_read(tmp_path, capsys):
    folder = tmp_path / "predictions.csv"
    folder.mkdir()
    _refused_quickly(capsys, ["config", "--config", str(folder)], folder)
