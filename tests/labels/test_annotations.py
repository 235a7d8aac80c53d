from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from mixsup.config import AnnotationConfig
from mixsup.errors import AnnotationError
from mixsup.labels.annotations import (
    IGNORE,
    NEGATIVE,
    POSITIVE,
    Region,
    SlideAnnotations,
    mask_to_annotations,
    rasterize_geometry,
    read_annotations,
    write_geojson,
)

CAMELYON = ["009", "011", "036", "039", "044", "046", "058", "076", "085"]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a == POSITIVE, b == POSITIVE
    return (a & b).sum() / max((a | b).sum(), 1)


def _window(ann, ds=32):
    b = ann.tumor.bounds
    return b[0], b[1], int((b[2] - b[0]) / ds) + 2, int((b[3] - b[1]) / ds) + 2, ds


@pytest.mark.filterwarnings("ignore:.*repaired")
@pytest.mark.parametrize("n", CAMELYON)
def test_asap_xml_and_ncrf_json_rasterise_alike(shared, n):
    xml = read_annotations(shared / "annotations" / "camelyon16-asap" / f"tumor_{n}.xml")
    js = read_annotations(shared / "annotations" / "camelyon16-ncrf-json" / f"Tumor_{n}.json")
    win = _window(xml)
    mx, mj = xml.rasterize(*win), js.rasterize(*win)
    assert (mx == POSITIVE).sum() > 100
    assert _iou(mx, mj) > 0.99


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
    win = _window(xml)
    mx, mj = xml.rasterize(*win), js.rasterize(*win)
    assert _iou(mx, mj) > 0.99
    assert (mx == mj).mean() > 0.99


def test_unknown_class_is_an_error_naming_it(shared):
    path = shared / "annotations" / "tcga-prad" / "TCGA-EJ-5519-01Z-00-DX1.xml"
    with pytest.raises(AnnotationError, match="'CaP'.*class_map"):
        read_annotations(path)


def test_camelyon17_tumor_group(shared):
    ann = read_annotations(shared / "annotations" / "camelyon17" / "patient_004_node_4.xml")
    assert [r.role for r in ann.regions] == ["tumor"] * 3


def _fc(*features):
    return {"type": "FeatureCollection", "features": list(features)}


def _feat(coords, name, holes=()):
    return {"type": "Feature", "geometry": {"type": "Polygon",
                                            "coordinates": [coords, *holes]},
            "properties": {"classification": {"name": name}}}


SQUARE = [[10, 10], [50, 10], [50, 50], [10, 50], [10, 10]]
ROI = [[0, 0], [80, 0], [80, 80], [0, 80], [0, 0]]


def test_roi_semantics(tmp_path):
    p = tmp_path / "a.geojson"
    p.write_text(json.dumps(_fc(_feat(ROI, "ROI"), _feat(SQUARE, "Tumor"))))
    ann = read_annotations(p)
    mask = ann.rasterize(0, 0, 100, 100, 1.0)
    assert mask[30, 30] == POSITIVE  # inside tumour
    assert mask[70, 70] == NEGATIVE  # inside ROI, outside tumour
    assert mask[90, 90] == IGNORE  # outside ROI: unlabelled
    assert (mask == POSITIVE).sum() == 40 * 40


def test_no_roi_means_whole_slide_annotated(tmp_path):
    p = tmp_path / "a.geojson"
    p.write_text(json.dumps([_feat(SQUARE, "Tumor")]))  # bare-list form
    mask = read_annotations(p).rasterize(0, 0, 100, 100, 1.0)
    assert mask[90, 90] == NEGATIVE and mask[30, 30] == POSITIVE


def test_holes_are_not_tumour_and_downsample(tmp_path):
    hole = [[20, 20], [40, 20], [40, 40], [20, 40], [20, 20]]
    p = tmp_path / "a.geojson"
    p.write_text(json.dumps(_fc(_feat(SQUARE, "Tumor", holes=[hole]))))
    mask = read_annotations(p).rasterize(0, 0, 50, 50, 1.0)
    assert mask[30, 30] == NEGATIVE and mask[15, 15] == POSITIVE
    coarse = read_annotations(p).rasterize(0, 0, 25, 25, 2.0)
    assert (coarse == POSITIVE).sum() == pytest.approx((1600 - 400) / 4, rel=0.05)


def _mask(*regions):
    """40x40 mask at 1 px per level-0 px of (role, (x0, y0, x1, y1[, hole box])) outlines."""
    def poly(x0, y0, x1, y1, hole=None):
        return shapely.Polygon(shapely.box(x0, y0, x1, y1).exterior,
                               [] if hole is None else [shapely.box(*hole).exterior])

    ann = SlideAnnotations(tuple(Region(role, role, poly(*box)) for role, box in regions))
    return ann.rasterize(0, 0, 40, 40, 1.0)


RING = (5, 5, 25, 25, (10, 10, 20, 20))  # outline rows/cols 5..24, hole rows/cols 10..19


def test_hole_in_negative_outline_gives_back_what_lay_beneath():
    expect = np.full((40, 40), NEGATIVE, np.uint8)
    np.testing.assert_array_equal(_mask(("negative", RING)), expect)  # no tumour anywhere
    expect = np.full((40, 40), POSITIVE, np.uint8)
    expect[5:25, 5:25] = NEGATIVE
    expect[10:20, 10:20] = POSITIVE  # the tumour beneath the outline
    np.testing.assert_array_equal(_mask(("tumor", (0, 0, 40, 40)), ("negative", RING)), expect)


@pytest.mark.parametrize("role, value", [("ignore", IGNORE), ("tumor", POSITIVE)])
def test_hole_in_outline_straddling_an_roi_edge(role, value):
    roi_left = ("roi", (0, 0, 15, 40))  # columns 0..14 annotated; the hole spans 10..19
    expect = np.full((40, 40), IGNORE, np.uint8)
    expect[:, :15] = NEGATIVE
    expect[5:25, 5:25] = value
    expect[10:20, 10:15] = NEGATIVE
    expect[10:20, 15:20] = IGNORE
    np.testing.assert_array_equal(_mask(roi_left, (role, RING)), expect)


def test_hole_in_ignore_outline_outside_every_roi_stays_unlabelled():
    expect = np.full((40, 40), IGNORE, np.uint8)
    expect[30:, 30:] = NEGATIVE
    np.testing.assert_array_equal(_mask(("roi", (30, 30, 40, 40)), ("ignore", RING)), expect)


def test_empty_geometry_rasterises_to_nothing():
    assert not rasterize_geometry(shapely.Polygon(), 0, 0, 8, 8).any()
    assert rasterize_geometry(shapely.box(2, 2, 4, 4), 0, 0, 8, 8).sum() == 4


def test_hole_in_roi_is_unlabelled():
    expect = np.full((40, 40), IGNORE, np.uint8)
    expect[5:25, 5:25] = NEGATIVE
    expect[10:20, 10:20] = IGNORE
    np.testing.assert_array_equal(_mask(("roi", RING)), expect)


def test_self_intersecting_polygon_is_repaired_or_rejected(tmp_path):
    bowtie = [[0, 0], [40, 40], [40, 0], [0, 40], [0, 0]]
    p = tmp_path / "bow.geojson"
    p.write_text(json.dumps(_fc(_feat(bowtie, "Tumor"))))
    with pytest.warns(UserWarning, match="repaired 1 self-intersecting"):
        ann = read_annotations(p)
    assert ann.tumor.is_valid and ann.tumor.area == pytest.approx(800)
    with pytest.raises(AnnotationError, match="Self-intersection"):
        read_annotations(p, AnnotationConfig(repair_invalid=False))


def test_empty_polygon_and_outside_slide_are_errors(tmp_path):
    p = tmp_path / "empty.geojson"
    p.write_text(json.dumps(_fc(_feat([[0, 0], [10, 0], [0, 0]], "Tumor"))))
    with pytest.raises(AnnotationError, match="empty or degenerate|point"):
        read_annotations(p)
    p = tmp_path / "far.geojson"
    p.write_text(json.dumps(_fc(_feat([[x + 5000, y] for x, y in SQUARE], "Tumor"))))
    with pytest.raises(AnnotationError, match="outside the slide"):
        read_annotations(p, slide_dimensions=(1000, 1000))


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
    win = _window(ann, ds=4)
    np.testing.assert_array_equal(ann.rasterize(*win), again.rasterize(*win))


def test_mask_image_round_trip():
    mask = np.full((60, 60), IGNORE, np.uint8)
    mask[10:50, 10:50] = NEGATIVE
    mask[20:30, 20:40] = POSITIVE
    ann = mask_to_annotations(mask, downsample=4.0)
    back = ann.rasterize(0, 0, 60, 60, 4.0)
    assert (back == mask).mean() > 0.97


def test_geojson_gives_one_qupath_class_and_measurements_when_set():
    import shapely

    from mixsup.labels.annotations import Region, SlideAnnotations

    regions = tuple(Region(f"Top-K #{k}", "ignore", shapely.box(0, 0, 10, 10),
                           classification="Top-K", measurements=(("rank", float(k)),))
                    for k in (1, 2))
    feats = SlideAnnotations(regions).to_geojson()["features"]
    assert {f["properties"]["classification"]["name"] for f in feats} == {"Top-K"}
    assert [f["properties"]["measurements"]["rank"] for f in feats] == [1.0, 2.0]
    plain = SlideAnnotations((Region("x", "tumor", shapely.box(0, 0, 1, 1)),)).to_geojson()
    assert plain["features"][0]["properties"]["classification"]["name"] == "Tumor"
    assert "measurements" not in plain["features"][0]["properties"]
