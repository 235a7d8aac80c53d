from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import fast_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:  # a dev dependency: the fuzz tests skip without it
    from hypothesis import HealthCheck, settings

    # `make test` runs a bounded, fixed set of examples per fuzz test (a CI run is
    # reproducible); `pytest --hypothesis-profile=long tests/reliability/test_fuzz.py` runs
    # deeper, with fresh examples each time.
    _QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
              HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile("default", max_examples=40, deadline=None,
                              suppress_health_check=_QUIET, derandomize=True)
    settings.register_profile("long", max_examples=2000, deadline=None,
                              suppress_health_check=_QUIET)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
except ImportError:
    pass

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared test data not found at {SHARED} (clone beside ../shared/data)")
    return SHARED


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny procedural dataset: 6 slides of 768 px at 1 um/px."""
    from mixsup.synth.shapes import make_shapes

    return make_shapes(tmp_path_factory.mktemp("shapes"), n_slides=6, size=768, seed=1,
                       annotated_fraction=1.0, progress=False)


@pytest.fixture(scope="session")
def trained(shapes_data, tmp_path_factory):
    """A finished run with the FAST settings (shared by several test modules)."""
    from mixsup.train.api import train

    run = tmp_path_factory.mktemp("trained") / "run"
    return train(shapes_data, run, fast_config(), progress=False)


@pytest.fixture(scope="session")
def predicted(trained, shapes_data, tmp_path_factory) -> Path:
    """``mixsup predict`` output for every slide of the shapes fixture (6 slides)."""
    from mixsup.predict.engine import collect_inputs, predict

    out = tmp_path_factory.mktemp("view") / "pred"
    predict(trained.run_dir, collect_inputs([], str(shapes_data)), out, progress=False)
    return out
