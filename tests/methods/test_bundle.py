"""Exporting the bundle: a resumed run's identical export leaves the files as they are."""

from __future__ import annotations

import json

from mixsup.methods import bundle as bundle_mod
from mixsup.methods.bundle import export_bundle
from mixsup.methods.registry import get_mode
from tests.helpers import fast_config


def test_an_identical_export_rewrites_nothing_and_a_changed_one_rewrites(tmp_path,
                                                                         monkeypatch):
    from mixsup.storage.artefacts import save_checkpoint

    cfg, mode = fast_config(1), get_mode("mixed")
    t1, t2 = tmp_path / "t1.pt", tmp_path / "t2.pt"
    save_checkpoint(t1, {"model": "theta1 weights"})
    save_checkpoint(t2, {"model": "theta2 weights"})
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

    save_checkpoint(t2, {"model": "theta2 weights, retrained"})
    export_bundle(out, cfg, mode, t1, t2, info)
    assert (out / "theta2.pt").read_bytes() == t2.read_bytes() and writes

    writes.clear()
    export_bundle(out, cfg, mode, t1, t2, {**info, "selected_round": 2})
    assert json.loads((out / "bundle.json").read_text())["selected_round"] == 2
    assert "json" in writes


def _bundle(tmp_path):
    import torch

    from mixsup.models.factory import build_theta2
    from mixsup.storage.artefacts import save_checkpoint

    cfg, mode = fast_config(1), get_mode("mixed")
    t1, t2 = tmp_path / "t1.pt", tmp_path / "t2.pt"
    save_checkpoint(t1, {"model": mode.build_theta1(cfg, load_weights=False).state_dict()})
    save_checkpoint(t2, {"model": build_theta2(cfg.model, cfg.stage2,
                                               load_weights=False).state_dict()})
    out = export_bundle(tmp_path / "bundle", cfg, mode, t1, t2,
                        {"selected_round": 1, "operating_threshold": 0.4})
    return out, torch


def test_a_tampered_bundle_json_is_one_error_naming_it(tmp_path):
    import pytest

    from mixsup.errors import MixsupError
    from mixsup.methods.bundle import read_bundle

    out, _ = _bundle(tmp_path)
    assert read_bundle(out).threshold == 0.4
    meta = json.loads((out / "bundle.json").read_text())
    for key, value, says in (("operating_threshold", 7, "outside"),
                             ("operating_threshold", "abc", "not a finite number"),
                             ("operating_threshold", True, "not a finite number"),
                             ("operating_threshold", float("nan"), "not a finite number"),
                             ("theta2", "yes", "neither null")):
        (out / "bundle.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(MixsupError, match=says) as exc:
            read_bundle(out)
        assert exc.value.path == str(out / "bundle.json")


def test_weights_that_do_not_fit_or_are_not_finite_are_refused_naming_the_file(tmp_path):
    import pytest

    from mixsup.errors import MixsupError
    from mixsup.methods.bundle import load_bundle
    from mixsup.storage.artefacts import load_checkpoint, save_checkpoint

    out, torch = _bundle(tmp_path)
    load_bundle(out)  # the untouched bundle loads
    good = load_checkpoint(out / "theta1.pt")["model"]
    name = next(k for k, v in good.items() if v.is_floating_point() and v.ndim == 4)
    var = next(k for k in good if k.endswith("running_var"))
    cases = [("NaN", name, {**good, name: torch.full_like(good[name], float("nan"))}),
             ("do not fit", name, {**good, name: good[name][:1]}),
             ("not in the file", name, {k: v for k, v in good.items() if k != name}),
             ("negative-variance", var, {**good, var: -good[var] - 1}),
             ("no weights", "", {}), ("no weights", "", "abc"), ("no weights", "", []),
             ("no weights", "", None)]
    for says, first, state in cases:
        save_checkpoint(out / "theta1.pt", {} if state is None else {"model": state})
        with pytest.raises(MixsupError, match=says) as exc:
            load_bundle(out)
        assert exc.value.path == str(out / "theta1.pt")
        assert first in str(exc.value)


def test_an_older_bundle_json_still_reads_into_the_typed_record(tmp_path):
    """Keys later versions added (mode, θ2's init, resize_to, theta1_slides) may be missing,
    the first bundles' unkeyed normalisation reads as θ1's, and unknown keys are kept."""
    from mixsup.methods.bundle import read_bundle

    out, _ = _bundle(tmp_path)
    meta = json.loads((out / "bundle.json").read_text())
    for key in ("mode", "theta1_slides", "created"):
        meta.pop(key, None)
    meta["theta2"].pop("init")
    norm = meta["preprocessing"]["normalisation"]["theta1"]
    norm.pop("resize_to")
    meta["preprocessing"]["normalisation"] = norm
    meta["from_a_later_version"] = 1
    (out / "bundle.json").write_text(json.dumps(meta))
    bundle = read_bundle(out)
    assert bundle.mode.name == "mixed" and bundle.meta.theta1_slides is None
    assert bundle.meta.preprocessing.normalisation["theta1"].mean == tuple(norm["mean"])
    assert bundle.meta.preprocessing.patch_size == bundle.cfg.tiling.patch_size
    assert bundle.meta.model_extra == {"from_a_later_version": 1}
