"""The format registry and each format's parser, on real exports where ../shared/data has them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely

from mixsup.config import AnnotationConfig
from mixsup.errors import AnnotationError
from mixsup.labels.annotations import read_annotations
from mixsup.labels.formats import FORMATS, recognise
from mixsup.labels.formats.qupath import to_geojson, write_geojson
from mixsup.labels.regions import POSITIVE, Region, SlideAnnotations
from tests.labels.samples import fc, feat, iou, window

CAMELYON = ["009", "011", "036", "039", "044", "046", "058", "076", "085"]

# One 800 px² tumour triangle, (0, 0) (40, 0) (40, 40), in each format.
TRIANGLE = [[0, 0], [40, 0], [40, 40]]
SAMPLES = {
    "asap": '<ASAP_Annotations><Annotations><Annotation Name="A" PartOfGroup="Tumor" '
            'Type="Polygon"><Coordinates>'
            + "".join(f'<Coordinate Order="{i}" X="{x}" Y="{y}"/>'
                      for i, (x, y) in enumerate(TRIANGLE))
            + "</Coordinates></Annotation></Annotations></ASAP_Annotations>",
    "imagescope": '<Annotations><Annotation Name="Tumor"><Regions><Region><Vertices>'
                  + "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in TRIANGLE)
                  + "</Vertices></Region></Regions></Annotation></Annotations>",
    "ncrf": json.dumps({"positive": [{"name": "A", "vertices": TRIANGLE}], "negative": []}),
    "qupath": json.dumps(fc(feat([*TRIANGLE, TRIANGLE[0]], "Tumor"))),
}


def test_registry_has_a_parser_for_each_format():
    assert set(FORMATS) == set(SAMPLES) == {"asap", "imagescope", "qupath", "ncrf"}
    assert all(name == fmt.name for name, fmt in FORMATS.items())


@pytest.mark.parametrize("name", SAMPLES)
def test_each_format_is_recognised_by_its_own_parser_alone(tmp_path, name):
    raw = SAMPLES[name].encode()
    fmt, doc = recognise(raw, Path("sample"))
    assert fmt.name == name
    assert [f.name for f in FORMATS.values()
            if f.syntax == fmt.syntax and f.recognises(doc)] == [name]
    path = tmp_path / "sample"
    path.write_bytes(raw)
    ann = read_annotations(path)
    assert [r.role for r in ann.regions] == ["tumor"]
    assert ann.tumor.area == pytest.approx(800)


@pytest.mark.parametrize("content, what", [
    ("plain text", r"not an annotation file \(expected XML or GeoJSON\)"),
    ("<Slide><Annotation/></Slide>", r"unknown XML annotation format \(root <Slide>\)"),
    ('{"shapes": []}', "JSON is neither a GeoJSON FeatureCollection"),
])
def test_unknown_format_is_a_clear_error(tmp_path, content, what):
    path = tmp_path / "mystery.dat"
    path.write_text(content)
    with pytest.raises(AnnotationError, match=what) as err:
        read_annotations(path)
    assert err.value.path == str(path)
    assert "GeoJSON" in err.value.fix


@pytest.mark.filterwarnings("ignore:.*repaired")
@pytest.mark.parametrize("n", CAMELYON)
def test_asap_xml_and_ncrf_json_rasterise_alike(shared, n):
    xml = read_annotations(shared / "annotations" / "camelyon16-asap" / f"tumor_{n}.xml")
    js = read_annotations(shared / "annotations" / "camelyon16-ncrf-json" / f"Tumor_{n}.json")
    win = window(xml)
    mx, mj = xml.rasterize(*win), js.rasterize(*win)
    assert (mx == POSITIVE).sum() > 100
    assert iou(mx, mj) > 0.99


@pytest.mark.filterwarnings("ignore:.*repaired")
def test_exclusion_group_is_cut_out_of_tumour(shared):
    ann = read_annotations(shared / "annotations" / "camelyon16-asap" / "tumor_039.xml")
    assert ann.of_role("negative"), "tumor_039 has 'negative' exclusion outlines"
    union_tumor = shapely.union_all(ann.of_role("tumor"))
    assert ann.tumor.area < union_tumor.area


@pytest.mark.filterwarnings("ignore:.*repaired")
def test_imagescope_xml_and_qupath_bare_list_agree(shared):
    cfg = AnnotationConfig(class_map={"CaP": "tumor", "layer_3": "negative",
                                      "layer_4": "ignore"})
    folder = shared / "annotations" / "tcga-prad"
    xml = read_annotations(folder / "TCGA-EJ-5519-01Z-00-DX1.xml", cfg)
    js = read_annotations(folder / "TCGA-EJ-5519-01Z-00-DX1.json", cfg)
    assert sorted(r.role for r in xml.regions) == sorted(r.role for r in js.regions)
    win = window(xml)
    mx, mj = xml.rasterize(*win), js.rasterize(*win)
    assert iou(mx, mj) > 0.99
    assert (mx == mj).mean() > 0.99


def test_camelyon17_tumor_group(shared):
    ann = read_annotations(shared / "annotations" / "camelyon17" / "patient_004_node_4.xml")
    assert [r.role for r in ann.regions] == ["tumor"] * 3


def test_invalid_json_and_xml_and_bomb(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(AnnotationError, match="invalid JSON") as err:
        read_annotations(bad)
    assert "bad.geojson" in str(err.value)
    broken = tmp_path / "broken.xml"
    broken.write_text("<ASAP_Annotations><Annotations>")
    with pytest.raises(AnnotationError, match="invalid XML"):
        read_annotations(broken)
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
                    "<ASAP_Annotations>&lol2;</ASAP_Annotations>")
    with pytest.raises(AnnotationError, match="unsafe XML"):
        read_annotations(bomb)


def test_geojson_written_round_trips(tmp_path, shared):
    src = shared / "annotations" / "camelyon17" / "patient_004_node_4.xml"
    ann = read_annotations(src)
    out = tmp_path / "out.geojson"
    write_geojson(out, ann)
    data = json.loads(out.read_text())
    assert data["type"] == "FeatureCollection"
    assert all(f["properties"]["classification"]["name"] == "Tumor" for f in data["features"])
    again = read_annotations(out)
    win = window(ann, ds=4)
    np.testing.assert_array_equal(ann.rasterize(*win), again.rasterize(*win))


def test_geojson_gives_one_qupath_class_and_measurements_when_set():
    regions = tuple(Region(f"Top-K #{k}", "ignore", shapely.box(0, 0, 10, 10),
                           classification="Top-K", measurements=(("rank", float(k)),))
                    for k in (1, 2))
    feats = to_geojson(SlideAnnotations(regions))["features"]
    assert {f["properties"]["classification"]["name"] for f in feats} == {"Top-K"}
    assert [f["properties"]["measurements"]["rank"] for f in feats] == [1.0, 2.0]
    plain = to_geojson(SlideAnnotations((Region("x", "tumor", shapely.box(0, 0, 1, 1)),)))
    assert plain["features"][0]["properties"]["classification"]["name"] == "Tumor"
    assert "measurements" not in plain["features"][0]["properties"]


def test_a_vertex_without_coordinates_is_the_files_error(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text('<ASAP_Annotations><Annotations><Annotation Name="a" PartOfGroup="Tumor" '
                   'Type="Polygon"><Coordinates><Coordinate Order="0" X="1" Y="1"/>'
                   '<Coordinate Order="1" X="9"/><Coordinate Order="2" X="1" Y="9"/>'
                   '</Coordinates></Annotation></Annotations></ASAP_Annotations>')
    with pytest.raises(AnnotationError, match="numeric X and Y") as err:
        read_annotations(bad)
    assert err.value.path == str(bad)
