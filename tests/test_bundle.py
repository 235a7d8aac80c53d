"""Exporting the bundle: a resumed run's identical export leaves the files as they are."""

from __future__ import annotations

import json

from mixsup import bundle as bundle_mod
from mixsup.bundle import export_bundle
from mixsup.modes import get_mode
from tests.helpers import fast_config


def test_an_identical_export_rewrites_nothing_and_a_changed_one_rewrites(tmp_path,
                                                                         monkeypatch):
    cfg, mode = fast_config(1), get_mode("mixed")
    t1, t2 = tmp_path / "t1.pt", tmp_path / "t2.pt"
    t1.write_bytes(b"theta1 weights")
    t2.write_bytes(b"theta2 weights")
    writes: list[str] = []
    real_copy, real_json = bundle_mod.shutil.copyfile, bundle_mod.write_json
    monkeypatch.setattr(bundle_mod.shutil, "copyfile",
                        lambda src, dst: (writes.append("copy"), real_copy(src, dst))[1])
    monkeypatch.setattr(bundle_mod, "write_json",
                        lambda path, obj: (writes.append("json"), real_json(path, obj))[1])
    info = {"selected_round": 1, "stage2_losses": {1: {"train_loss": float("nan")}}}
    out = export_bundle(tmp_path / "bundle", cfg, mode, t1, t2, info)
    assert writes == ["copy", "copy", "json"]

    writes.clear()
    export_bundle(out, cfg, mode, t1, t2, info)  # NaN included: it compares as written
    assert writes == []

    t2.write_bytes(b"theta2 weights, retrained")
    export_bundle(out, cfg, mode, t1, t2, info)
    assert (out / "theta2.pt").read_bytes() == b"theta2 weights, retrained" and writes

    writes.clear()
    export_bundle(out, cfg, mode, t1, t2, {**info, "selected_round": 2})
    assert json.loads((out / "bundle.json").read_text())["selected_round"] == 2
    assert "json" in writes
