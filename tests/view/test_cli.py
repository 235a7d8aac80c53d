from __future__ import annotations

from mixsup.cli import main
from mixsup.view import assets


def test_view_without_openseadragon_names_the_fix(predicted, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(assets, "OSD_DIR", tmp_path / "missing")
    assert main(["view", str(predicted), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "OpenSeadragon" in err and "make viewer-assets" in err and err.count("\n") == 1


def test_view_refuses_a_folder_without_predictions(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(assets, "osd_files", lambda require=True: {})
    assert main(["view", str(tmp_path), "--port", "0"]) == 2
    assert "predict.json" in capsys.readouterr().err
