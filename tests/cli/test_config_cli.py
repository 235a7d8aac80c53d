from __future__ import annotations

import json

import pytest

from mixsup.cli import main
from mixsup.config import load_config
from mixsup.errors import ConfigError


def test_presets_and_overrides(tmp_path):
    paper = load_config("paper")
    assert (paper.tiling.mpp, paper.tiling.patch_size, paper.tiling.overlap) == (0.5, 512, 128)
    small = load_config("small", overrides=["tiling.overlap=0"])
    assert small.tiling.mpp == 1.0 and small.tiling.overlap == 0
    f = tmp_path / "c.yaml"
    f.write_text("tissue:\n  method: grey\n")
    assert load_config("paper", [f]).tissue.method == "grey"


@pytest.mark.parametrize("override,needle", [
    ("tiling.bogus=1", "tiling.bogus"),
    ("tiling.min_tissue=1.5", "min_tissue"),
    ("tiling.overlap=600", "overlap"),
    ("nonsense", "bad override"),
])
def test_bad_config_is_rejected(override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config("paper", overrides=[override])


def test_cli_info(shared, capsys):
    assert main(["info", str(shared / "slides" / "CMU-1-Small-Region.svs")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dimensions"] == [2220, 2967] and info["mpp"] == pytest.approx(0.499)


def test_cli_info_broken_file_exits_nonzero(shared, capsys):
    assert main(["info", str(shared / "slides" / "broken.svs")]) == 2
    err = capsys.readouterr().err
    assert "broken.svs" in err and err.count("\n") == 1


def test_cli_tile_dataset(shapes_data, tmp_path, capsys):
    out = tmp_path / "tiles"
    assert main(["-q", "tile", str(shapes_data), "--preset", "small", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["slides_tiled"] == 6 and summary["patches"] > 0
    assert "tiled 6 slide(s)" in capsys.readouterr().out


def test_cli_tile_skips_a_bad_slide_and_strict_fails(shapes_data, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes_data, data)
    (data / "slides" / "slide_001.tiff").write_bytes(b"not a slide")
    out = tmp_path / "tiles"
    assert main(["-q", "tile", str(data), "--preset", "small", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["skipped"]) == ["slide_001"] and summary["slides_tiled"] == 5
    assert main(["-q", "tile", str(data), "--preset", "small", "--out", str(out),
                 "--strict"]) == 2
    assert "slide_001.tiff" in capsys.readouterr().err


def test_cli_annotations_to_mask(shared, tmp_path):
    import cv2

    src = shared / "annotations" / "camelyon17" / "patient_004_node_4.xml"
    assert main(["annotations", str(src), str(tmp_path / "m.png"), "--downsample", "64"]) == 0
    mask = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED)
    assert (mask == 1).sum() > 0
