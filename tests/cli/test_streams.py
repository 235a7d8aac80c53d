"""Standard output that goes away, fills up or cannot encode: a quiet end, one error, or
escaped text; never the catch-all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MIXSUP = [sys.executable, "-m", "mixsup"]


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly():
    proc = subprocess.Popen([*MIXSUP, "config", "--preset", "small"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # as `| true` does, before anything is read
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 141)
    assert b"unexpected" not in err and b"Traceback" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_full_device_under_standard_output_is_one_error():
    with open("/dev/full", "w") as full:
        done = subprocess.run([*MIXSUP, "config", "--preset", "small"], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 2
    assert "no space left" in done.stderr and "unexpected" not in done.stderr


def test_help_prints_in_any_encoding():
    done = subprocess.run([*MIXSUP, "train", "--help"], capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and b"Traceback" not in done.stderr
    assert b"--resume" in done.stdout
