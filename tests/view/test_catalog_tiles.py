"""The catalog of a prediction folder and the Deep Zoom tiles cut from it."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import zarr
from PIL import Image

from mixsup.errors import MixsupError
from mixsup.evaluate.report import evaluate
from mixsup.labels.table import load_dataset
from mixsup.render.heatmap import jet_rgb
from mixsup.render.heatmap_figure import FLOOR
from mixsup.slides.reader import Slide
from mixsup.view import deepzoom
from mixsup.view.catalog import load_catalog
from mixsup.view.deepzoom import MapTiles, SlideTiles, TileOutOfRange


def test_catalog_lists_every_slide_with_labels_and_evaluates_metrics(predicted, shapes_data,
                                                                     tmp_path):
    cat = load_catalog(predicted, shapes_data)
    ds = {r.slide_id: r for r in load_dataset(shapes_data).slides}
    assert sorted(s.slide_id for s in cat.slides) == sorted(ds)
    thr = json.loads((predicted / "predict.json").read_text())["operating_threshold"]
    for s in cat.slides:
        assert s.label == ds[s.slide_id].label and s.center == ds[s.slide_id].center
        assert s.prediction == int(s.probability >= thr)
        wrong = s.prediction != s.label
        assert s.outcome == ("F" if wrong else "T") + ("P" if s.prediction else "N")
    expected = evaluate(predicted / "predictions.csv", shapes_data / "slides.csv", tmp_path)
    assert cat.metrics is not None
    assert json.dumps(cat.metrics.to_json()) == json.dumps(expected.to_json())
    assert load_catalog(predicted).metrics is None  # no --data: no labels, no metrics


def test_catalog_refuses_a_folder_that_is_not_a_prediction(tmp_path):
    with pytest.raises(MixsupError, match="predict.json"):
        load_catalog(tmp_path)


def _dz_size(xml: str) -> tuple[int, int]:
    size = ET.fromstring(xml).find("{http://schemas.microsoft.com/deepzoom/2008}Size")
    return int(size.get("Width")), int(size.get("Height"))


def test_slide_tiles_match_the_reader(predicted):
    entry = load_catalog(predicted).slides[0]
    tiles = SlideTiles(entry.slide_path)
    with Slide(entry.slide_path) as slide:
        assert _dz_size(tiles.dzi()) == slide.dimensions
        top = tiles.dz.level_count - 1  # full resolution
        img = np.asarray(Image.open(io.BytesIO(tiles.tile(top, 0, 0))).convert("RGB"), float)
        ref = slide.read_region((0, 0), 0, (img.shape[1], img.shape[0])).astype(float)
    assert img.shape[:2] == (deepzoom.TILE_SIZE + deepzoom.OVERLAP,) * 2
    assert np.abs(img - ref).mean() < 4  # JPEG
    with pytest.raises(TileOutOfRange):
        tiles.tile(top + 1, 0, 0)
    with pytest.raises(TileOutOfRange):
        tiles.tile(top, *tiles.dz.level_tiles[top])
    tiles.close()


def test_large_regions_are_read_in_bands(predicted, monkeypatch):
    entry = load_catalog(predicted).slides[0]
    tiles = SlideTiles(entry.slide_path)
    level = tiles.dz.level_count - 3  # a quarter of the slide's resolution: one tile, 4x shrunk
    whole = np.asarray(Image.open(io.BytesIO(tiles.tile(level, 0, 0))), float)
    reads = []
    read = tiles.read
    monkeypatch.setattr(tiles, "read", lambda *a: reads.append(a) or read(*a))
    monkeypatch.setattr(deepzoom, "MAX_READ_PIXELS", 64 * 64)
    banded = np.asarray(Image.open(io.BytesIO(tiles.tile(level, 0, 0))), float)
    assert len(reads) > 1 and max(s[2][0] * s[2][1] for s in reads) <= 64 * 64 * 2
    assert banded.shape == whole.shape and np.abs(banded - whole).mean() < 4
    tiles.close()


def test_overlay_tiles_colour_the_probability_map(predicted):
    entry = load_catalog(predicted).slides[0]
    prob = np.asarray(zarr.open_array(str(entry.probmap), mode="r")[:], np.float32)
    with Slide(entry.slide_path) as slide:
        dims = slide.dimensions
    tiles = MapTiles(entry.probmap, dims)
    assert _dz_size(tiles.dzi()) == (prob.shape[1], prob.shape[0])
    top = tiles.dz.level_count - 1
    rgba = np.asarray(Image.open(io.BytesIO(tiles.tile(top, 0, 0))))
    h, w = rgba.shape[:2]
    sub = prob[:h, :w]
    painted = sub >= FLOOR
    assert (rgba[..., 3] > 0).tolist() == painted.tolist()
    expected = jet_rgb((np.clip(sub, 0, 1) * 255).astype(np.uint8))
    assert np.array_equal(rgba[..., :3][painted], expected[painted])
    with pytest.raises(MixsupError, match="slide of"):
        MapTiles(entry.probmap, (dims[0] + 1, dims[1]))
