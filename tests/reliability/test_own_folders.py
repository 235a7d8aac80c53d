"""mixsup's own folders are user input too ("trust nothing on disk"): a run folder, a bundle
or a prediction folder copied between machines or resumed after a crash may be damaged. Each
damage is one clean error (exit 2) naming the file, never a traceback, never the "unexpected
... bug in mixsup" line, never garbage accepted with exit 0."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from mixsup.cli import main
from mixsup.storage.artefacts import load_checkpoint, save_checkpoint
from tests.helpers import FAST
from tests.reliability.builders import cli_fails as _fails

TINY = ["--preset", "tiny", *(a for s in FAST for a in ("--set", s))]




@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A copy of the finished FAST run, to damage."""
    copy = tmp_path / "run"
    shutil.copytree(trained.run_dir, copy, ignore=shutil.ignore_patterns("figures"))
    return copy


def _selected(run: Path) -> str:
    return f"round_{json.loads((run / 'summary.json').read_text())['selected_round']}"


def _resume(data: Path, run: Path) -> list[str]:
    return ["-q", "train", str(data), "--out", str(run), *TINY, "--resume"]


# -- damage -------------------------------------------------------------------------------
Damage = Callable[[Path], None]


def _text(content: str | bytes) -> Damage:
    def write(path: Path) -> None:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return write


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _delete(path: Path) -> None:
    path.unlink()


def _edit_json(edit: Callable[[dict], object]) -> Damage:
    def write(path: Path) -> None:
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))
    return write


def _edit_weights(edit: Callable[[dict], dict]) -> Damage:
    def write(path: Path) -> None:
        save_checkpoint(path, edit(load_checkpoint(path)))
    return write


# -- 1. mixsup train --resume on a damaged run folder -----------------------------------------
RUN_DAMAGE = [
    ("empty config", "config.yaml", _text(b""), "holds nothing"),
    ("non-UTF-8 config", "config.yaml", _text(b"\xff\xfe\x00a"), "not UTF-8"),
    ("scalar config", "config.yaml", _text("42\n"), "holds 42"),
    ("YAML syntax error", "config.yaml", _text("tiling: [\n"), "invalid YAML"),
    ("invalid config", "config.yaml", _text("tiling:\n  mpp: -3\n"), "tiling.mpp"),
    ("round summary list", "round_1/summary.json", _text("[]"), "round summary"),
    ("round summary without pools", "round_1/summary.json",
     _edit_json(lambda d: d.pop("pools")), "pools"),
    ("truncated round summary", "round_1/summary.json", _truncate, "invalid JSON"),
    ("stage-2 summary off its model", "SEL/stage2/summary.json",
     _edit_json(lambda d: d.update(train_slides="many")), "train_slides"),
    ("stage-2 summary list", "SEL/stage2/summary.json", _text("[1]"), "stage-2 summary"),
    ("truncated negatives", "round_1/negatives.npy", _truncate, "cannot read the arrays"),
    ("round model missing", "SEL/model.pt", _delete, "not found"),
    ("truncated round model", "SEL/model.pt", _truncate, "refused to load"),
    ("stage-2 model missing", "SEL/stage2/model.pt", _delete, "not found"),
]


@pytest.mark.parametrize("name,rel,damage,needle", RUN_DAMAGE, ids=[d[0] for d in RUN_DAMAGE])
def test_resume_refuses_a_damaged_run_folder(shapes_data, run, capsys, name, rel, damage,
                                             needle):
    path = run / rel.replace("SEL", _selected(run))
    damage(path)
    err = _fails(capsys, _resume(shapes_data, run), str(path), needle)
    assert "run folder is damaged" in err


TILE_DAMAGE = [("list", "slide_000.json", _text("[]")),
               ("keys missing", "slide_000.json",
                _edit_json(lambda d: [d.pop("slide_path"), d.pop("mpp")])),
               ("truncated arrays", "slide_000.npz", _truncate)]


@pytest.mark.parametrize("name,rel,damage", TILE_DAMAGE, ids=[d[0] for d in TILE_DAMAGE])
def test_a_damaged_stored_tiling_is_made_again(shapes_data, run, capsys, caplog, name, rel,
                                               damage):
    damage(run / "tiles" / rel)
    assert main(_resume(shapes_data, run)) == 0
    assert "tiling slide_000 again" in caplog.text
    meta = json.loads((run / "tiles" / "slide_000.json").read_text())
    with np.load(run / "tiles" / "slide_000.npz") as arrays:
        assert meta["slide_path"] and arrays["coords"].ndim == 2


@pytest.fixture(scope="module")
def abmil_run(shapes_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("abmil") / "run"
    assert main(["-q", "train", str(shapes_data), "--mode", "abmil", "--out", str(out), *TINY,
                 "--set", "abmil.epochs=1"]) == 0
    return out


def test_an_abmil_run_without_its_model_is_refused(shapes_data, abmil_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(abmil_run, run)
    (run / "abmil" / "model.pt").unlink()
    _fails(capsys, ["-q", "train", str(shapes_data), "--mode", "abmil", "--out", str(run),
                    *TINY, "--set", "abmil.epochs=1", "--resume"],
           str(run / "abmil" / "model.pt"), "run folder is damaged")


# -- 2. mixsup rounds on damaged map stores -------------------------------------------------
STORE = "round_1/maps/slide_000.zarr"


def _attrs(edit: Callable[[dict], object]) -> Damage:
    def write(store: Path) -> None:
        group = zarr.open_group(str(store), mode="r+")
        attrs = dict(group.attrs)
        edit(attrs)
        group.attrs.put(attrs)
    return write


def _array(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Damage:
    def write(store: Path) -> None:
        group = zarr.open_group(str(store), mode="r+")
        data = change(np.asarray(group[name][:]))
        del group[name]
        group.create_array(name, data=data)
    return write


def _nan_at_3(a: np.ndarray) -> np.ndarray:
    return np.where(np.arange(a.size).reshape(a.shape) == 3, np.nan, a).astype(a.dtype)


MAP_DAMAGE = [
    ("no size0", _attrs(lambda a: a.pop("size0")), "size0"),
    ("size0 text", _attrs(lambda a: a.update(size0="abc")), "size0 is 'abc'"),
    ("size0 zero", _attrs(lambda a: a.update(size0=0)), "size0 is 0"),
    ("2-D maps", _array("prob", lambda a: a[:, :, 0]), "arrays of shapes"),
    ("3-D coords", _array("coords", lambda a: a[:, :, None]), "arrays of shapes"),
    ("2-D maxima", _array("max_prob", lambda a: a[:, None]), "arrays of shapes"),
    ("NaN in a map", _array("prob", _nan_at_3), "NaN"),
    ("NaN in the maxima", _array("max_prob", _nan_at_3), "NaN"),
]


@pytest.mark.parametrize("name,damage,needle", MAP_DAMAGE, ids=[d[0] for d in MAP_DAMAGE])
def test_rounds_refuses_damaged_maps(shapes_data, run, capsys, name, damage, needle):
    damage(run / STORE)
    _fails(capsys, ["-q", "rounds", str(run), "--data", str(shapes_data)], str(run / STORE),
           needle)


def test_rounds_refuses_a_stray_round_folder_and_summary(shapes_data, run, capsys):
    (run / "round_abc").mkdir()
    _fails(capsys, ["-q", "rounds", str(run), "--data", str(shapes_data)], "round_abc")
    (run / "round_abc").rmdir()
    (run / "summary.json").write_text("[]")
    _fails(capsys, ["-q", "rounds", str(run), "--data", str(shapes_data)], "summary.json")


# -- 3. mixsup predict with a damaged bundle ------------------------------------------------
@pytest.fixture
def bundle(trained, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(trained.run_dir / "bundle", copy)
    return copy


def _predict(bundle: Path, shapes_data: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "predict", str(bundle), str(shapes_data / "slides" / "slide_005.tiff"),
            "--out", str(out), *extra]


def _negative_variance(state: dict) -> dict:
    return {**state, "model": {k: -v.abs() - 1 if k.endswith("running_var") else v
                               for k, v in state["model"].items()}}


def _config(section: str, key: str, value: object) -> Damage:
    return _edit_json(lambda d: d["config"][section].update({key: value}))


# More damaged weights: tests/methods/test_bundle.py.
BUNDLE_DAMAGE = [
    ("another model's weights", "theta1.pt",
     lambda p: shutil.copyfile(p.with_name("theta2.pt"), p), "(first: encoder."),
    ("negative variance", "theta2.pt", _edit_weights(_negative_variance), "negative-variance"),
    ("config MPP 1e-6", "bundle.json", _config("tiling", "mpp", 1e-6), "tiling.mpp"),
    ("config MPP NaN", "bundle.json", _config("tiling", "mpp", float("nan")), "tiling.mpp"),
    ("bundle MPP 1e-6", "bundle.json",
     _edit_json(lambda d: d["preprocessing"].update(mpp=1e-6)), "preprocessing.mpp"),
    ("bundle MPP NaN", "bundle.json",
     _edit_json(lambda d: d["preprocessing"].update(mpp=float("nan"))), "preprocessing.mpp"),
    ("huge top_k", "bundle.json", _config("stage2", "top_k", 10**9), "stage2.top_k"),
]


@pytest.mark.parametrize("name,rel,damage,needle", BUNDLE_DAMAGE,
                         ids=[d[0] for d in BUNDLE_DAMAGE])
def test_predict_refuses_a_damaged_bundle(shapes_data, bundle, tmp_path, capsys, name, rel,
                                          damage, needle):
    damage(bundle / rel)
    out = tmp_path / "pred"
    _fails(capsys, _predict(bundle, shapes_data, out), str(bundle / rel), needle)
    assert not (out / "predictions.csv").exists()


def test_nan_from_the_models_stops_prediction(shapes_data, bundle, tmp_path, capsys,
                                              monkeypatch):
    import mixsup.inference.slide as slide

    monkeypatch.setattr(slide, "_theta2_score", lambda *a: (float("nan"), [float("nan")] * 2))
    out = tmp_path / "pred"
    _fails(capsys, _predict(bundle, shapes_data, out), str(bundle), "NaN")
    assert not (out / "predictions.csv").exists()


def test_a_damaged_slide_record_of_a_prediction_folder(shapes_data, bundle, tmp_path,
                                                       capsys):
    out = tmp_path / "pred"
    assert main(_predict(bundle, shapes_data, out)) == 0
    record = out / "slides" / "slide_005.json"
    _edit_json(lambda d: d.update(n_patches="many"))(record)
    _fails(capsys, _predict(bundle, shapes_data, out), str(record), "n_patches")


# -- 4. a refused start claims nothing --------------------------------------------------------
class _Started(Exception):
    """Raised in place of the training work: the command got past every check."""


@pytest.mark.parametrize("bad", [["--set", "model.encoder=nosuchmodel"], ["--weights", "EMPTY"]],
                         ids=["unknown encoder", "empty weights file"])
def test_a_refused_train_leaves_nothing_behind(shapes_data, tmp_path, capsys, monkeypatch,
                                               bad):
    (tmp_path / "empty.pth").write_bytes(b"")
    run = tmp_path / "run"
    args = ["-q", "train", str(shapes_data), "--out", str(run), *TINY]
    _fails(capsys, [*args, *(str(tmp_path / "empty.pth") if a == "EMPTY" else a for a in bad)])
    assert not run.exists()

    def started(*args, **kwargs):
        raise _Started

    monkeypatch.setattr("mixsup.train.api.prepare", started)
    with pytest.raises(_Started):
        main(args)


@pytest.mark.parametrize("bad", [["--encoder", "nosuchmodel"], ["--weights", "EMPTY"]],
                         ids=["unknown encoder", "empty weights file"])
def test_a_refused_features_command_claims_no_folder(shapes_data, tmp_path, capsys, bad):
    (tmp_path / "empty.pth").write_bytes(b"")
    feats = tmp_path / "feats"
    args = ["-q", "features", str(shapes_data), "--out", str(feats), *TINY, "--splits", "val"]
    _fails(capsys, [*args, *(str(tmp_path / "empty.pth") if a == "EMPTY" else a for a in bad)])
    assert not (feats / "features.json").exists()
    assert main(args) == 0
    assert len(list(feats.glob("*.zarr"))) == 1


# -- 5. settings of the machine ----------------------------------------------------------------
def test_too_many_loader_workers_are_refused_before_the_run(shapes_data, tmp_path, capsys):
    run = tmp_path / "run"
    _fails(capsys, ["-q", "train", str(shapes_data), "--out", str(run), *TINY,
                    "--set", "runtime.num_workers=10000"], "runtime.num_workers")
    assert not run.exists()


def test_more_threads_than_cpus_are_clamped(caplog):
    from mixsup.config import RuntimeConfig
    from mixsup.runtime.device import pick_device, usable_cpus

    before = torch.get_num_threads()
    try:
        pick_device(RuntimeConfig(device="cpu", threads=100_000))
        assert torch.get_num_threads() <= usable_cpus()
        assert "runtime.threads is 100000" in caplog.text
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("env,needle", [({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc'"),
                                        ({"WORLD_SIZE": "2"}, "RANK is not"),
                                        ({"WORLD_SIZE": "2", "RANK": "x"}, "RANK='x'"),
                                        ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0'")])
def test_a_malformed_torchrun_environment(shapes_data, tmp_path, capsys, monkeypatch, env,
                                          needle):
    monkeypatch.delenv("RANK", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run = tmp_path / "run"
    _fails(capsys, ["-q", "train", str(shapes_data), "--out", str(run), *TINY], needle)
    assert not run.exists()
