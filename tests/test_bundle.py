"""Exporting the bundle: a resumed run's identical export leaves the files as they are."""

from __future__ import annotations

import json
from pathlib import Path

from mixsup.bundle import export_bundle
from mixsup.modes import get_mode
from tests.helpers import fast_config


def _inodes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in folder.iterdir()}


def test_an_identical_export_rewrites_nothing_and_a_changed_one_rewrites(tmp_path):
    cfg, mode = fast_config(1), get_mode("mixed")
    t1, t2 = tmp_path / "t1.pt", tmp_path / "t2.pt"
    t1.write_bytes(b"theta1 weights")
    t2.write_bytes(b"theta2 weights")
    out = export_bundle(tmp_path / "bundle", cfg, mode, t1, t2, {"selected_round": 1})
    first = _inodes(out)
    assert set(first) == {"bundle.json", "theta1.pt", "theta2.pt"}

    export_bundle(out, cfg, mode, t1, t2, {"selected_round": 1})
    assert _inodes(out) == first

    t2.write_bytes(b"theta2 weights, retrained")
    export_bundle(out, cfg, mode, t1, t2, {"selected_round": 1})
    assert (out / "theta2.pt").read_bytes() == b"theta2 weights, retrained"
    second = _inodes(out)
    assert second["theta2.pt"] != first["theta2.pt"]

    export_bundle(out, cfg, mode, t1, t2, {"selected_round": 2})
    assert json.loads((out / "bundle.json").read_text())["selected_round"] == 2
    assert _inodes(out)["bundle.json"] != second["bundle.json"]
