from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mixsup.view.assets import OSD_DIR


@contextmanager
def serving(catalog, **kw: int) -> Iterator:
    """The viewer of ``catalog`` on an ephemeral loopback port, in a thread of this process."""
    from mixsup.view.server import make_server

    server = make_server(catalog, "127.0.0.1", 0, **kw)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def served(predicted, shapes_data) -> Iterator:
    from mixsup.view.catalog import load_catalog

    with serving(load_catalog(predicted, shapes_data)) as server:
        yield server


def chromium() -> str:
    """The headless browser, or a skip saying how to get it."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(n)), None)
    if exe is None:
        pytest.skip("no chromium: install it (Debian: apt-get install -y chromium) to run the "
                    "viewer's browser test; .ci/run does")
    if not (OSD_DIR / "openseadragon.min.js").is_file():
        pytest.skip("OpenSeadragon is not installed: run `make viewer-assets` (needs npm)")
    probe = subprocess.run([exe, "--headless", "--version"], capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"chromium does not start: {probe.stderr.strip()[:200]}")
    return exe
