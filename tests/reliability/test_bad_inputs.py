"""Every bad input gives one clear error naming the file, a non-zero exit, and no half-written
output; a bad slide among many is skipped and listed (``--strict`` makes it fatal)."""

from __future__ import annotations

import json
import pickle
import re
import shutil

import numpy as np
import pytest
import torch

from mixsup.cli import main
from mixsup.config import load_config
from mixsup.errors import ConfigError, MixsupError
from mixsup.storage.artefacts import load_checkpoint, save_checkpoint
from mixsup.synth.pyramid_tiff import array_renderer, write_pyramid


def _err(capsys) -> str:
    return capsys.readouterr().err


@pytest.mark.parametrize("name", ["unreadable.svs", "unopenable.tiff", "broken.svs"])
def test_broken_shared_slides(shared, name, capsys):
    assert main(["info", str(shared / "slides" / name)]) == 2
    err = _err(capsys)
    assert name in err and "Fix:" in err


def test_truncated_tiff(tmp_path, capsys):
    img = np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    path = tmp_path / "cut.tiff"
    write_pyramid(path, 1024, 1024, array_renderer(img), mpp=1.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    assert main(["info", str(path)]) == 2
    assert "cut.tiff" in _err(capsys)


def test_not_a_slide_at_all(tmp_path, capsys):
    path = tmp_path / "notes.svs"
    path.write_text("this is a text file")
    assert main(["info", str(path)]) == 2
    assert "notes.svs" in _err(capsys)


def _dataset_with(tmp_path, shapes_data, extra_file, extra_id="extra"):
    data = tmp_path / "data"
    shutil.copytree(shapes_data, data)
    shutil.copyfile(extra_file, data / "slides" / extra_file.name)
    with open(data / "slides.csv", "a") as fh:
        fh.write(f"{extra_id},slides/{extra_file.name},0,train,A\n")
    return data


def test_missing_mpp_is_an_error_with_the_fix(shared, shapes_data, tmp_path, capsys):
    data = _dataset_with(tmp_path, shapes_data,
                         shared / "slides" / "tcga-cr-7395-01a-01-ts1.svs", "tcga")
    out = tmp_path / "tiles"
    assert main(["-q", "tile", str(data), "--preset", "small", "--out", str(out),
                 "--strict"]) == 2
    err = _err(capsys)
    assert "tcga-cr-7395-01a-01-ts1.svs" in err and "--mpp" in err
    assert not (out / "tcga.json").exists() and not (out / "tcga.npz").exists()
    # the long-run policy: skipped and listed, the other slides tiled
    assert main(["-q", "tile", str(data), "--preset", "small", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "tcga" in summary["skipped"] and summary["slides_tiled"] == 6
    # with an explicit MPP it tiles
    assert main(["-q", "tile", str(data), "--preset", "small", "--out", str(out),
                 "--mpp", "0.5"]) == 0


def test_non_pyramidal_tiff(shared, capsys):
    path = shared / "slides" / "kidney-48-5.tif"
    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["level_count"] == 1 and info["mpp"] is None
    assert main(["annotations", str(shared / "annotations" / "camelyon17" /
                                    "patient_004_node_4.xml"), "/tmp/x.geojson",
                 "--slide", str(path)]) == 2  # the outlines lie outside this small image
    assert "outside the slide" in _err(capsys)


def test_slide_without_tissue_is_a_warning(tmp_path, capsys):
    from mixsup.slides import open_slide, tile_slide
    from mixsup.slides.tiling import NoTissueWarning

    blank = np.full((512, 512, 3), 245, np.uint8)
    write_pyramid(tmp_path / "glass.tiff", 512, 512, array_renderer(blank), mpp=1.0)
    cfg = load_config("small")
    with pytest.warns(NoTissueWarning, match="glass.tiff"):
        tiles = tile_slide(open_slide(tmp_path / "glass.tiff"), "glass", cfg.tiling,
                           cfg.tissue, tmp_path / "t")
    assert len(tiles) == 0


@pytest.mark.parametrize("row,needle", [
    ("x,slides/slide_000.tiff,1,train,A\nx,slides/slide_001.tiff,0,train,A\n", "appears 2"),
    ("x,slides/slide_000.tiff,yes,train,A\n", "label 'yes'"),
    ("x,slides/nope.tiff,1,train,A\n", "does not exist"),
    ("x,../../etc/passwd,1,train,A\n", "escapes the dataset directory"),
    ("x,slides/slide_000.tiff,1,train,A,extra\n", "more fields than the header"),
])
def test_bad_slides_csv(shapes_data, tmp_path, capsys, row, needle):
    data = tmp_path / "data"
    shutil.copytree(shapes_data, data)
    lines = (data / "slides.csv").read_text().splitlines(keepends=True)
    (data / "slides.csv").write_text("".join(lines[:1]) + row)
    (data / "annotations").rename(tmp_path / "annotations")  # keep the csv the only problem
    assert main(["validate", str(data)]) == 2
    err = _err(capsys)
    assert needle in err and "slides.csv" in err


def test_missing_column(shapes_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(shapes_data, data)
    (data / "slides.csv").write_text("slide_id,path,split\n")
    assert main(["validate", str(data)]) == 2
    assert "missing column" in _err(capsys)


@pytest.mark.parametrize("content,needle", [
    ("{not json", "invalid JSON"),
    ("<ASAP_Annotations><Annotations>", "invalid XML"),
    ('<?xml version="1.0"?><!DOCTYPE b [<!ENTITY a "aaaa">]><ASAP_Annotations>&a;'
     "</ASAP_Annotations>", "unsafe XML"),
    ('{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Polygon",'
     '"coordinates":[[[0,0],[9,0],[0,0]]]},"properties":{"classification":{"name":"Tumor"}}}]}',
     "degenerate|malformed|invalid"),
    ('{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Polygon",'
     '"coordinates":[[[0,0],[9,0],[9,9],[0,0]]]},"properties":{"classification":'
     '{"name":"Stroma"}}}]}', "unknown annotation class 'Stroma'"),
    ('{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Polygon",'
     '"coordinates":[[[0,0],[99999,0],[99999,9],[0,0]]]},"properties":{"classification":'
     '{"name":"Tumor"}}}]}', "outside the slide"),
])
def test_bad_annotations_name_the_file(shapes_data, tmp_path, capsys, content, needle):
    data = tmp_path / "data"
    shutil.copytree(shapes_data, data)
    ann = next((data / "annotations").iterdir())
    bad = ann.with_suffix(".xml" if content.startswith("<") else ".geojson")
    ann.unlink()
    bad.write_text(content)
    assert main(["validate", str(data)]) == 2
    err = _err(capsys)
    assert re.search(needle, err) and bad.name in err


def test_checkpoint_that_is_not_ours(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(MixsupError, match="not a mixsup checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(MixsupError, match="refused"):
        load_checkpoint(path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format": "mixsup-checkpoint-v1", "model": _Evil(marker)}, fh)
    with pytest.raises(MixsupError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("override,needle", [
    ("stage1.threshold=1.5", "threshold"),
    ("stage1.threshold=-0.1", "threshold"),
    ("stage1.ratio=[2,-1,7]", "ratio"),
    ("stage2.epochs=0", "no training curve"),
    ("stage1.unknown=3", "unknown"),
    ("bogus.key=1", "bogus"),
])
def test_bad_config(override, needle, capsys):
    with pytest.raises(ConfigError, match=needle):
        load_config("small", overrides=[override])
    assert main(["config", "--set", override]) == 2
    assert "invalid configuration" in _err(capsys) or "bad override" in _err(capsys)


def test_write_errors_keep_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno
    import os

    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}})
    real = os.replace

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(MixsupError, match="no space left") as err:
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}})
    assert "ckpt.pt" in str(err.value)
    monkeypatch.setattr(os, "replace", real)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind

    def denied(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(MixsupError, match="permission denied"):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}})
