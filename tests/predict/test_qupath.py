"""``mixsup export-qupath``: OME-TIFF probability maps and QuPath detections from a hand-made
prediction folder (no training), read back as QuPath and mixsup would read them."""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile
from defusedxml import ElementTree

from mixsup.cli import main
from mixsup.errors import MixsupError
from mixsup.labels.annotations import read_annotations
from mixsup.predict.qupath import CLASSES, MEASUREMENT, export_qupath, write_ome_tiff
from mixsup.render.heatmap import stitch_to_zarr
from mixsup.storage.artefacts import new_group, open_array
from mixsup.storage.atomic import write_json

OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"
DIMS = (4096, 3072)  # level-0 width, height
SIZE0, M, MPP = 256.0, 32, 0.25  # patch side (level-0 px), map side, slide µm/px
DS = SIZE0 / M  # the probability map's level-0 px per pixel: a 512 x 384 map


def _predicted(root: Path, sid: str = "s1", dims: tuple[int, int] = DIMS,
               mpp: float | None = MPP, slide: str = "/data/s1.svs") -> Path:
    """The files `mixsup predict` leaves for one slide, made by hand: a grid of patches whose
    maps ramp from 0 (left) to 1 (right)."""
    xs, ys = np.arange(0, dims[0] - SIZE0 + 1, SIZE0), np.arange(0, dims[1] - SIZE0 + 1, SIZE0)
    coords = np.array([(x, y) for y in ys for x in xs], np.int64)
    ramp = np.linspace(0, 1, M, dtype=np.float32)[None, :]
    maps = np.stack([np.clip(ramp * (x + SIZE0) / dims[0], 0, 1).repeat(M, 0)
                     for x, _ in coords]).astype(np.float16)
    g = new_group(root / "maps" / f"{sid}.zarr")
    g.create_array("coords", data=coords)
    g.create_array("prob", data=maps)
    g.create_array("max_prob", data=maps.reshape(len(maps), -1).max(1).astype(np.float32))
    g.attrs.update({"version": 2, "n_patches": len(coords), "size0": SIZE0, "slide_id": sid})
    stitch_to_zarr(root / "probmaps" / f"{sid}.zarr", coords, maps, SIZE0, dims, DS,
                   overview_downsample=64.0)
    if mpp is not None:
        write_json(root / "tiles" / f"{sid}.json", {"slide_mpp": mpp,
                                                    "patch_size_level0": SIZE0})
    write_json(root / "slides" / f"{sid}.json", {"slide_id": sid, "path": slide,
                                                 "probability": 0.9, "prediction": 1,
                                                 "n_patches": len(coords), "topk": []})
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("qp")
    pred = _predicted(root / "pred")
    assert main(["export-qupath", str(pred), "--out", str(root / "qupath")]) == 0
    return pred, root / "qupath"


def _ome_pixels(tif: tifffile.TiffFile) -> dict[str, str]:
    pixels = ElementTree.fromstring(tif.ome_metadata).find(f"{OME}Image/{OME}Pixels")
    assert pixels is not None
    return dict(pixels.attrib)


def test_ome_tiff_is_a_tiled_pyramid_at_the_maps_physical_scale(exported):
    pred, out = exported
    prob = np.asarray(open_array(pred / "probmaps" / "s1.zarr")[:], np.float32)
    assert prob.shape == (384, 512)
    with tifffile.TiffFile(out / "s1.ome.tif") as tif:
        assert tif.is_ome
        levels = tif.series[0].levels
        assert [lv.shape for lv in levels] == [(384, 512), (192, 256), (96, 128)]
        assert len(tif.pages[0].subifds) == 2
        page = tif.pages[0]
        assert (page.tilewidth, page.tilelength, page.dtype) == (256, 256, np.uint8)
        base = levels[0].asarray()
        px = _ome_pixels(tif)
    assert np.abs(base.astype(int) - np.rint(prob * 255)).max() <= 1
    assert base.max() == 255 and base.min() == 0
    assert float(px["PhysicalSizeX"]) == pytest.approx(MPP * DS)
    assert float(px["PhysicalSizeY"]) == pytest.approx(MPP * DS)
    assert px["PhysicalSizeXUnit"] == px["PhysicalSizeYUnit"] == "µm"
    assert (px["SizeX"], px["SizeY"], px["Type"]) == ("512", "384", "uint8")


def test_small_map_and_no_mpp(tmp_path, caplog):
    """A map under 256 px is one level; without MPP no pixel size is written, with a warning."""
    prob = np.linspace(0, 1, 100 * 70, dtype=np.float32).reshape(70, 100)
    with caplog.at_level(logging.WARNING, logger="mixsup.predict.qupath"):
        write_ome_tiff(tmp_path / "a.ome.tif", prob, None, 8.0)
    assert "no MPP" in caplog.text
    with tifffile.TiffFile(tmp_path / "a.ome.tif") as tif:
        assert len(tif.series[0].levels) == 1
        assert "PhysicalSizeX" not in _ome_pixels(tif)
        assert np.array_equal(tif.asarray(), np.rint(prob * 255).astype(np.uint8))


def test_detections_are_qupath_features_in_level0_pixels(exported):
    pred, out = exported
    doc = json.loads((out / "s1.detections.geojson").read_text())
    assert doc["type"] == "FeatureCollection"
    feats = doc["features"]
    group_coords = np.asarray(open_array(pred / "maps" / "s1.zarr" / "coords")[:])
    max_prob = np.asarray(open_array(pred / "maps" / "s1.zarr" / "max_prob")[:])
    assert len(feats) == len(group_coords) == 16 * 12
    names = {v[0] for v in CLASSES.values()}
    for f, (x, y), p in zip(feats, group_coords, max_prob, strict=True):
        assert set(f) == {"type", "id", "geometry", "properties"}
        assert f["type"] == "Feature" and uuid.UUID(f["id"])
        props = f["properties"]
        assert set(props) == {"objectType", "classification", "measurements"}
        assert props["objectType"] == "detection"
        assert props["classification"]["name"] in names
        assert len(props["classification"]["color"]) == 3
        q = props["measurements"][MEASUREMENT]
        assert 0 <= q <= 1 and q == pytest.approx(p, abs=1e-6)
        assert props["classification"]["name"] == ("mixsup tumour" if q >= 0.5 else
                                                   "mixsup other")
        assert f["geometry"]["type"] == "Polygon"
        ring = np.array(f["geometry"]["coordinates"][0])
        assert ring.shape == (5, 2) and (ring[0] == ring[-1]).all()
        assert (ring.min(0) == (x, y)).all() and (ring.max(0) == (x + SIZE0, y + SIZE0)).all()
    assert len({f["id"] for f in feats}) == len(feats)
    assert (out / "README.txt").read_text().count("Show measurement maps") == 1


def test_ids_are_stable_across_exports(exported, tmp_path):
    pred, out = exported
    export_qupath(pred, tmp_path)
    assert (tmp_path / "s1.detections.geojson").read_bytes() == \
        (out / "s1.detections.geojson").read_bytes()


def _reviewed(out: Path, tmp: Path, keep_detections: bool) -> Path:
    """What QuPath exports after review: some detections deleted, a tumour outline drawn."""
    doc = json.loads((out / "s1.detections.geojson").read_text())
    feats = doc["features"][::3] if keep_detections else []
    drawn = [[1000.0, 1000.0], [1800.5, 1000.0], [1800.5, 1700.0], [1000.0, 1700.0],
             [1000.0, 1000.0]]
    feats.append({"type": "Feature", "id": str(uuid.uuid4()),
                  "geometry": {"type": "Polygon", "coordinates": [drawn]},
                  "properties": {"objectType": "annotation",
                                 "classification": {"name": "Tumor", "color": [200, 0, 0]}}})
    path = tmp / ("all.geojson" if keep_detections else "annotations.geojson")
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}, indent=2))
    return path


def test_round_trip_reads_the_drawn_tumour_and_skips_the_detections(exported, tmp_path):
    """QuPath out -> review (detections deleted, a tumour drawn) -> mixsup in: the drawn
    outline is a tumour label; detections left in an "all objects" export are the model's
    output and never become labels."""
    _, out = exported
    only = read_annotations(_reviewed(out, tmp_path, keep_detections=False))
    assert [(r.name, r.role) for r in only.regions] == [("Tumor", "tumor")]
    assert only.tumor.bounds == (1000.0, 1000.0, 1800.5, 1700.0)
    everything = read_annotations(_reviewed(out, tmp_path, keep_detections=True))
    assert [(r.name, r.role) for r in everything.regions] == [("Tumor", "tumor")]
    assert everything.tumor.bounds == only.tumor.bounds
    mask = everything.rasterize(0, 0, 64, 48, downsample=64.0)
    assert (mask[16:26, 16:28] == 1).all() and mask.sum() == (mask == 1).sum()


def test_mpp_from_the_slide_when_the_tiling_record_is_gone(shared, tmp_path, caplog):
    slides = shared / "slides"
    with_mpp = slides / "CMU-1-Small-Region.svs"
    without = slides / "tcga-cr-7395-01a-01-ts1.svs"
    if not without.is_file():
        pytest.skip(f"{without} not in the shared data")
    pred = _predicted(tmp_path / "pred", "cmu", (2220, 2967), None, str(with_mpp))
    _predicted(pred, "tcga", (2220, 2967), None, str(without))
    with caplog.at_level(logging.WARNING, logger="mixsup.predict.qupath"):
        assert export_qupath(pred, tmp_path / "out") == {"cmu": 88, "tcga": 88}
    with tifffile.TiffFile(tmp_path / "out" / "cmu.ome.tif") as tif:
        assert float(_ome_pixels(tif)["PhysicalSizeX"]) == pytest.approx(0.499 * DS, rel=1e-3)
    with tifffile.TiffFile(tmp_path / "out" / "tcga.ome.tif") as tif:
        assert "PhysicalSizeX" not in _ome_pixels(tif)
    assert "tcga.ome.tif: the slide has no MPP" in caplog.text


def test_bad_prediction_folders_name_the_file(tmp_path, capsys):
    with pytest.raises(MixsupError, match="no slides/ folder") as err:
        export_qupath(tmp_path, tmp_path / "out")
    assert err.value.path == str(tmp_path / "slides")
    assert main(["export-qupath", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "slides" in capsys.readouterr().err

    pred = _predicted(tmp_path / "pred")
    shutil.rmtree(pred / "probmaps" / "s1.zarr")
    with pytest.raises(MixsupError, match="probability map is missing") as err:
        export_qupath(pred, tmp_path / "out")
    assert err.value.path == str(pred / "probmaps" / "s1.zarr")

    pred = _predicted(tmp_path / "pred2")
    shutil.rmtree(pred / "maps" / "s1.zarr" / "max_prob")
    with pytest.raises(MixsupError, match="patch map store") as err:
        export_qupath(pred, tmp_path / "out")
    assert err.value.path == str(pred / "maps" / "s1.zarr")

    (pred / "slides" / "s1.json").write_text("{not json")
    with pytest.raises(MixsupError, match="invalid JSON") as err:
        export_qupath(pred, tmp_path / "out")
    assert err.value.path == str(pred / "slides" / "s1.json")


def test_the_command_imports_no_torch(exported, tmp_path):
    from tests.test_layering import _heavy, _run_command

    pred, _ = exported
    done, modules = _run_command("-q", "export-qupath", str(pred), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "mixsup.predict.qupath" in modules
    assert _heavy(modules) == [], _heavy(modules)[:5]


def test_odd_or_legacy_object_types_neither_crash_nor_become_labels(tmp_path):
    square = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}
    tumour = {"classification": {"name": "Tumor"}}
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": square, "properties": {**tumour, "objectType": ["x"]}},
        {"type": "Feature", "id": "PathDetectionObject", "geometry": square,
         "properties": tumour}]}
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(doc))
    assert [r.name for r in read_annotations(path).regions] == ["Tumor"]  # the list one
