"""A bundle trained on tissue outlined in GeoJSON predicts new slides on their outlines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mixsup.errors import MixsupError


@pytest.fixture()
def geojson_bundle(trained, tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(Path(trained.run_dir) / "bundle", bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["config"]["tissue"]["source"] = "geojson"  # as a run with tissue.source=geojson
    (bundle / "bundle.json").write_text(json.dumps(meta))
    return bundle


def test_predict_tiles_only_inside_the_new_slides_outlines(geojson_bundle, shapes_data,
                                                           tmp_path: Path) -> None:
    from mixsup.methods.bundle import read_bundle
    from mixsup.predict.engine import collect_inputs, predict, predict_config

    sid, path = collect_inputs([], str(shapes_data))[0]
    outlines = tmp_path / "outlines"
    outlines.mkdir()
    half = [[0, 0], [384, 0], [384, 768], [0, 768], [0, 0]]  # the left half, level-0 px
    (outlines / f"{sid}.geojson").write_text(json.dumps({
        "type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
                                                          "coordinates": [half]}}))
    bf = read_bundle(geojson_bundle)
    with pytest.raises(MixsupError, match="tissue.geojson_dir"):
        predict(bf, [(sid, path)], tmp_path / "none", progress=False)
    cfg = predict_config(bf, overrides=[f"tissue.geojson_dir={json.dumps(str(outlines))}"])
    result = predict(bf, [(sid, path)], tmp_path / "pred", cfg, progress=False)
    assert [r.slide_id for r in result.rows] == [sid]
    tiles = np.load(next((tmp_path / "pred" / "tiles").glob(f"{sid}*.npz")))["coords"]
    assert len(tiles) and (tiles[:, 0] < 384).all()
    # another slide has no outlines there: skipped, naming the file
    other, other_path = collect_inputs([], str(shapes_data))[1]
    result = predict(bf, [(other, other_path)], tmp_path / "pred2", cfg, progress=False)
    assert other in result.skipped and f"{other}.geojson" in result.skipped[other]


def test_the_datasets_tissue_column_gives_each_slide_its_outlines(geojson_bundle, shapes_data,
                                                                  tmp_path: Path) -> None:
    import csv

    from mixsup.predict.engine import collect_inputs, dataset_outlines, predict

    data = tmp_path / "data"
    shutil.copytree(shapes_data, data)
    rows = list(csv.DictReader((data / "slides.csv").open()))
    sid = rows[0]["slide_id"]
    top = [[0, 0], [768, 0], [768, 256], [0, 256], [0, 0]]  # the top third, level-0 px
    (data / "tissue").mkdir()
    (data / "tissue" / "a.geojson").write_text(json.dumps({
        "type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
                                                          "coordinates": [top]}}))
    with (data / "slides.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, [*rows[0], "tissue"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "tissue": "tissue/a.geojson" if r["slide_id"] == sid else ""})
    inputs = [i for i in collect_inputs([], str(data)) if i[0] == sid]
    result = predict(geojson_bundle, inputs, tmp_path / "pred", progress=False,
                     outlines=dataset_outlines(data))
    assert [r.slide_id for r in result.rows] == [sid]
    tiles = np.load(next((tmp_path / "pred" / "tiles").glob(f"{sid}*.npz")))["coords"]
    assert len(tiles) and (tiles[:, 1] < 256).all()
