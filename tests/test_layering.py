"""Layering: prediction, the bundle and scoring must not depend on training code, and commands
that neither train nor score must not import torch (checked on the commands as users run them).
Each import runs in a fresh interpreter, so that what this test process has imported cannot
hide (or fake) a dependency."""

from __future__ import annotations

import json
import math
import pkgutil
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

import mixsup.inference

FORBIDDEN = "mixsup.train"
SCORING = sorted(f"mixsup.inference.{m.name}"
                 for m in pkgutil.iter_modules(mixsup.inference.__path__))

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def _imported_by(module: str) -> list[str]:
    """Every module in ``sys.modules`` after a fresh interpreter imports ``module``."""
    done = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _training(modules: list[str]) -> list[str]:
    return [m for m in modules if m == FORBIDDEN or m.startswith(FORBIDDEN + ".")]


def test_the_scoring_package_lists_its_modules():
    assert {"mixsup.inference.patch_maps", "mixsup.inference.map_store",
            "mixsup.inference.theta2", "mixsup.inference.stores",
            "mixsup.inference.topk"} <= set(SCORING)


@pytest.mark.parametrize("module", ["mixsup.predict.engine", "mixsup.methods.bundle",
                                    "mixsup.inference", *SCORING])
def test_module_imports_no_training_code(module):
    modules = _imported_by(module)
    assert module in modules  # the probe really imported it
    assert _training(modules) == [], f"{module} pulls in training code"


def test_the_probe_sees_training_imports():
    """The check above can fail: importing the trainer shows up in the probe's sys.modules."""
    assert "mixsup.train.api" in _training(_imported_by("mixsup.train.api"))


# the annotation reader is imported by the server only when a slide page asks for it
@pytest.mark.parametrize("module", ["mixsup.view.server", "mixsup.view.catalog",
                                    "mixsup.labels.annotations"])
def test_the_viewer_imports_neither_training_code_nor_torch(module):
    """The server holds about 150 MB without torch and 850 MB with it."""
    modules = _imported_by(module)
    assert module in modules
    assert _training(modules) == [] and "torch" not in modules


# -- the commands as users run them ------------------------------------------------------------
# ``python -m mixsup ARGS`` in a fresh interpreter that prints its sys.modules on exit.
HEAVY = ("torch", "timm", "torchvision")
MARK = "imported modules: "
COMMAND_PROBE = f"""
import atexit, json, runpy, sys
atexit.register(lambda: print({MARK!r} + json.dumps(sorted(sys.modules)), flush=True))
sys.argv = ["mixsup", *sys.argv[1:]]
runpy.run_module("mixsup", run_name="__main__", alter_sys=True)
"""
# The viewer refuses to start without OpenSeadragon (a build step); a stub file stands in.
VIEW_PROBE = """
import pathlib, sys
import mixsup.view.assets
mixsup.view.assets.OSD_DIR = pathlib.Path(sys.argv.pop(1))
""" + COMMAND_PROBE


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY or m.startswith(FORBIDDEN + ".")]


def _modules(stdout: str) -> list[str]:
    line = next(ln for ln in reversed(stdout.splitlines()) if ln.startswith(MARK))
    return json.loads(line[len(MARK):])


def _run_command(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    done = subprocess.run([sys.executable, "-c", COMMAND_PROBE, *args], capture_output=True,
                          text=True, timeout=300)
    return done, _modules(done.stdout)


def _commands(shapes_data: Path, predicted: Path, out: Path) -> dict[str, list[str]]:
    """Every command that neither trains nor scores, on real inputs."""
    return {
        "help": ["--help"],
        "info": ["info", str(shapes_data / "slides" / "slide_000.tiff")],
        "validate": ["validate", str(shapes_data)],
        "evaluate": ["evaluate", str(predicted / "predictions.csv"), "--labels",
                     str(shapes_data / "slides.csv"), "--out", str(out / "report")],
        "config": ["config", "--preset", "small"],
        "annotations": ["annotations", str(shapes_data / "annotations" / "slide_000.geojson"),
                        str(out / "mask.png"), "--slide",
                        str(shapes_data / "slides" / "slide_000.tiff")],
        "tile": ["tile", str(shapes_data), "--preset", "tiny", "--out", str(out / "tiles")],
        "synth": ["synth", str(out / "synth"), "--n-slides", "2", "--size", "256"],
        "export-qupath": ["export-qupath", str(predicted), "--out", str(out / "qupath")],
    }


@pytest.mark.parametrize("name", ["help", "info", "validate", "evaluate", "config",
                                  "annotations", "tile", "synth", "export-qupath"])
def test_command_imports_no_torch(name, shapes_data, predicted, tmp_path):
    args = _commands(shapes_data, predicted, tmp_path)[name]
    done, modules = _run_command("-q", *args)
    assert done.returncode == 0, done.stderr
    assert "mixsup.cli" in modules  # the probe really ran the command line
    assert _heavy(modules) == [], f"mixsup {name} imports {_heavy(modules)[:5]}"


def test_the_command_probe_sees_torch(tmp_path):
    """The check above can fail: predict imports torch to read a bundle before refusing it."""
    done, modules = _run_command("predict", str(tmp_path), "--out", str(tmp_path / "pred"))
    assert done.returncode == 2 and "no model bundle" in done.stderr
    assert "torch" in _heavy(modules)


def test_mixsup_view_serves_slides_without_torch(predicted, shapes_data, tmp_path):
    """``mixsup view`` started as a user starts it, then browsed: every slide's page data and
    a full-resolution tile of its slide and its overlay."""
    osd = tmp_path / "osd"
    osd.mkdir()
    (osd / "openseadragon.min.js").write_text("")
    proc = subprocess.Popen([sys.executable, "-c", VIEW_PROBE, str(osd), "view", str(predicted),
                             "--data", str(shapes_data), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        found = re.search(r"http://\S+", first)
        assert found, f"the viewer did not start: {first!r}"
        browsed = _browse(found[0].rstrip("/"))
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        watchdog.cancel()
    assert proc.returncode == 0, err
    assert browsed[0] == 6 and browsed[1] > 0
    modules = _modules(first + out)
    assert {"mixsup.view.server", "mixsup.view.deepzoom", "mixsup.labels.annotations"} <= set(
        modules)
    assert _heavy(modules) == [], f"mixsup view imports {_heavy(modules)[:5]}"


def _default_sigint() -> None:
    """A test run started in the background of a non-interactive shell ignores SIGINT, and so
    would the viewer it starts: give the viewer Ctrl-C back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _browse(url: str) -> tuple[int, int]:
    """Fetch what the slide pages fetch; the number of slides browsed and of those with
    annotation outlines (read on request)."""
    def get(path: str) -> bytes:
        with urllib.request.urlopen(url + path, timeout=120) as answer:
            return answer.read()

    slides = json.loads(get("/api/slides"))["slides"]
    annotated = 0
    for s in slides:
        page = json.loads(get(f"/api/slides/{s['slide_id']}"))
        assert page["overlay"] is not None
        annotated += page["annotations"] is not None
        for layer, fmt in (("slide", "jpeg"), ("overlay", "png")):
            dzi = get(f"/dzi/{s['slide_id']}/{layer}.dzi").decode()
            w, h = (int(v) for v in re.findall(r'(?:Width|Height)="(\d+)"', dzi))
            level = math.ceil(math.log2(max(w, h)))
            assert get(f"/dzi/{s['slide_id']}/{layer}_files/{level}/0_0.{fmt}")
    return len(slides), annotated
