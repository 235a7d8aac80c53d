"""Layering: prediction, the bundle and scoring must not depend on training code. Each import
runs in a fresh interpreter, so that what this test process has imported cannot hide (or fake)
a dependency."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import mixsup.scoring

FORBIDDEN = "mixsup.train"
SCORING = sorted(f"mixsup.scoring.{m.name}" for m in pkgutil.iter_modules(mixsup.scoring.__path__))

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
    assert {"mixsup.scoring.patch_maps", "mixsup.scoring.map_store", "mixsup.scoring.theta2",
            "mixsup.scoring.stores", "mixsup.scoring.topk"} <= set(SCORING)


@pytest.mark.parametrize("module", ["mixsup.predict", "mixsup.bundle", "mixsup.scoring",
                                    *SCORING])
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
