"""tissue.source=geojson: tissue outlined elsewhere (TRIDENT, GrandQC, QuPath) decides the tile
grid; a broken file stops the command naming it; the tissue QC's shares are reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mixsup.cli import main
from mixsup.config import TilingConfig, TissueConfig, load_config
from mixsup.dataset.tiles import tile_dataset, tiling_fingerprint
from mixsup.dataset.tissue_geojson import read_tissue_geojson
from mixsup.errors import MixsupError, TissueFileError
from mixsup.labels.table import load_dataset
from mixsup.slides import open_slide
from mixsup.slides.tiling import tile_slide
from mixsup.synth.pyramid_tiff import array_renderer, write_pyramid

SIZE, PATCH = 1024, 64
OUTER = [[128, 128], [896, 128], [896, 896], [128, 896], [128, 128]]
HOLE = [[384, 384], [640, 384], [640, 640], [384, 640], [384, 384]]
TILING = ["tiling.patch_size=64", "tiling.overlap=0"]
GEOJSON = ["tissue.source=geojson", *TILING]


def polygon(rings: list[list[list[int]]]) -> dict[str, Any]:
    return {"type": "Feature", "properties": {"tissue_id": 0},  # as TRIDENT writes them
            "geometry": {"type": "Polygon", "coordinates": rings}}


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def expected_tiles(hole: bool = True) -> set[tuple[int, int]]:
    """Grid cells inside OUTER and, with ``hole``, outside HOLE."""
    cells = {(x, y) for x in range(128, 896, PATCH) for y in range(128, 896, PATCH)}
    return {c for c in cells if not (hole and 384 <= c[0] < 640 and 384 <= c[1] < 640)}


def make_dataset(root: Path, tissue: dict[str, Any] | list[Any] | str | None) -> Path:
    """One slide of pink tissue on glass, textured in 16 um blocks (sharp on the 8 um
    thumbnail); ``tissue`` its GeoJSON, in the `tissue` column (None: no column)."""
    rng = np.random.default_rng(0)
    rgb = np.full((SIZE, SIZE, 3), 245, np.uint8)
    pink = np.array([225, 140, 185]) + rng.normal(0, 20, ((SIZE - 128) // 16,) * 2 + (3,))
    rgb[64:-64, 64:-64] = np.kron(pink.clip(0, 255), np.ones((16, 16, 1))).astype(np.uint8)
    (root / "slides").mkdir(parents=True)
    write_pyramid(root / "slides" / "s0.tiff", SIZE, SIZE, array_renderer(rgb), mpp=1.0)
    column, cell = "", ""
    if tissue is not None:
        (root / "tissue").mkdir()
        text = tissue if isinstance(tissue, str) else json.dumps(tissue)
        (root / "tissue" / "s0.geojson").write_text(text)
        column, cell = ",tissue", ",tissue/s0.geojson"
    (root / "slides.csv").write_text(f"slide_id,path,label,split{column}\n"
                                     f"s0,slides/s0.tiff,1,train{cell}\n")
    return root


def tiled(root: Path, overrides: list[str], out: Path) -> set[tuple[int, int]]:
    cfg = load_config("tiny", overrides=overrides)
    report = tile_dataset(load_dataset(root), cfg, out, progress=False)
    return {(int(x), int(y)) for x, y in report.tiles["s0"].coords}


def test_tiles_lie_inside_the_polygon_and_outside_its_hole(tmp_path):
    root = make_dataset(tmp_path / "data", collection(polygon([OUTER, HOLE])))
    assert tiled(root, GEOJSON, tmp_path / "tiles") == expected_tiles()
    meta = json.loads((tmp_path / "tiles" / "s0.json").read_text())
    assert meta["tissue_source"] == f"geojson {root / 'tissue' / 's0.geojson'}"
    assert meta["tissue_removed"] == {}
    # Otsu on the same slide tiles the whole pink square, hole and margin included
    assert len(tiled(root, TILING, tmp_path / "otsu")) > len(expected_tiles(hole=False))


@pytest.mark.parametrize("doc", [
    [polygon([OUTER, HOLE])],  # QuPath's bare list of features
    polygon([OUTER, HOLE]),  # one Feature
    collection({"type": "Feature", "properties": {"classification": {"name": "Tissue"}},
                "geometry": {"type": "MultiPolygon", "coordinates": [[OUTER, HOLE]]}}),
    collection(polygon([OUTER, HOLE]), {"type": "Feature", "properties": {},
                                        "geometry": {"type": "Point", "coordinates": [5, 5]}}),
], ids=["list", "feature", "multipolygon", "with-a-point"])
def test_geojson_dir_and_every_qupath_form(tmp_path, doc):
    root = make_dataset(tmp_path / "data", None)
    outlines = tmp_path / "outlines"
    outlines.mkdir()
    (outlines / "s0.geojson").write_text(json.dumps(doc))
    overrides = [*GEOJSON, f"tissue.geojson_dir={outlines}"]
    assert tiled(root, overrides, tmp_path / "tiles") == expected_tiles()


def test_a_changed_tissue_file_is_tiled_again(tmp_path):
    root = make_dataset(tmp_path / "data", collection(polygon([OUTER, HOLE])))
    out = tmp_path / "tiles"
    assert tiled(root, GEOJSON, out) == expected_tiles()
    (root / "tissue" / "s0.geojson").write_text(json.dumps(collection(polygon([OUTER]))))
    assert tiled(root, GEOJSON, out) == expected_tiles(hole=False)
    otsu, geojson = (load_config("tiny", overrides=o) for o in (TILING, GEOJSON))
    assert tiling_fingerprint(otsu) != tiling_fingerprint(geojson)


@pytest.mark.parametrize(("text", "what"), [
    ('{"type": "FeatureCollection", "features": [', "invalid JSON"),
    ("", "empty"),
    (json.dumps({"positive": [], "negative": []}), "not GeoJSON"),
    (json.dumps(collection(polygon([[[0, 0], [float("nan"), 0], [9, 9], [0, 0]]]))), "NaN"),
    (json.dumps(collection(polygon([[[0, 0], [9000, 0], [9000, 9000], [0, 0]]]))),
     "outside the slide"),
    (json.dumps(collection({"type": "Feature", "properties": {"objectType": "detection"},
                            "geometry": {"type": "Polygon", "coordinates": [OUTER]}})),
     "none of its 1 feature(s) is a tissue polygon"),
], ids=["truncated", "empty", "ncrf", "nan", "outside", "detections-only"])
def test_a_broken_tissue_file_stops_tiling_naming_it(tmp_path, capsys, text, what):
    root = make_dataset(tmp_path / "data", text)
    args = [f"--set={o}" for o in GEOJSON]
    assert main(["-q", "tile", str(root), "--preset", "tiny", *args]) == 2
    err = capsys.readouterr().err
    assert str(root / "tissue" / "s0.geojson") in err and what in err
    assert main(["-q", "validate", str(root), "--preset", "tiny", *args]) == 2
    assert str(root / "tissue" / "s0.geojson") in capsys.readouterr().err


def test_a_missing_tissue_file_is_named(tmp_path, capsys):
    root = make_dataset(tmp_path / "data", None)
    missing = tmp_path / "nowhere"
    with pytest.raises(TissueFileError, match="s0.geojson.*cannot read"):
        tiled(root, [*GEOJSON, f"tissue.geojson_dir={missing}"], tmp_path / "tiles")
    with pytest.raises(TissueFileError, match="'s0' has no tissue file"):
        tiled(root, GEOJSON, tmp_path / "tiles")
    assert main(["-q", "validate", str(root), "--fast", "--preset", "tiny",
                 *(f"--set={o}" for o in GEOJSON)]) == 2
    assert "tissue.geojson_dir" in capsys.readouterr().err


def test_an_empty_collection_is_a_slide_without_tissue(tmp_path, caplog):
    root = make_dataset(tmp_path / "data", collection())
    report = tile_dataset(load_dataset(root), load_config("tiny", overrides=GEOJSON),
                          tmp_path / "tiles", progress=False)
    assert report.no_tissue == ["s0"] and len(report.tiles["s0"]) == 0
    assert "Check the thumbnail preview, or its tissue outlines" in caplog.text


def test_tiling_without_the_outlines_is_refused(tmp_path):
    root = make_dataset(tmp_path / "data", collection(polygon([OUTER])))
    with open_slide(root / "slides" / "s0.tiff") as slide, \
            pytest.raises(MixsupError, match="no tissue outlines were given"):
        tile_slide(slide, "s0", TilingConfig(mpp=1.0, patch_size=64, overlap=0),
                   TissueConfig(source="geojson"))
    given = read_tissue_geojson(root / "tissue" / "s0.geojson")
    assert len(given.polygons) == 1 and len(given.sha256) == 64


def test_validate_and_tile_report_the_tissue(tmp_path, capsys):
    root = make_dataset(tmp_path / "data", collection(polygon([OUTER, HOLE])))
    args = ["--preset", "tiny", *(f"--set={o}" for o in GEOJSON)]
    assert main(["-q", "validate", str(root), *args]) == 0
    assert f"s0: {root / 'tissue' / 's0.geojson'}: 1 polygon(s)" in capsys.readouterr().out
    qc = ["--preset", "tiny", *(f"--set={o}" for o in TILING),
          "--set=tissue.remove_pen=true", "--set=tissue.remove_blur=true"]
    assert main(["-q", "validate", str(root), *qc]) == 0
    assert "s0: QC removed pen 0.00%, blur 0.00% of the detected tissue" in \
        capsys.readouterr().out
    out = tmp_path / "tiles"
    assert main(["-q", "tile", str(root), "--out", str(out), *qc]) == 0
    assert "  s0: pen 0.00%, blur 0.00%" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["tissue_removed"] == {
        "s0": {"pen": 0.0, "blur": 0.0}}
    assert json.loads((out / "s0.json").read_text())["tissue_removed"] == {"pen": 0.0,
                                                                           "blur": 0.0}


def test_a_tissue_path_may_not_leave_the_dataset(tmp_path):
    root = make_dataset(tmp_path / "data", collection(polygon([OUTER])))
    (root / "slides.csv").write_text("slide_id,path,label,split,tissue\n"
                                     "s0,slides/s0.tiff,1,train,../s0.geojson\n")
    with pytest.raises(MixsupError, match="tissue '../s0.geojson' escapes"):
        load_dataset(root)
