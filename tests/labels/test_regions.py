from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from mixsup.labels.annotations import read_annotations
from mixsup.labels.regions import (
    IGNORE,
    NEGATIVE,
    POSITIVE,
    Region,
    SlideAnnotations,
    mask_to_annotations,
)
from tests.labels.samples import ROI, SQUARE, fc, feat


def test_roi_semantics(tmp_path):
    p = tmp_path / "a.geojson"
    p.write_text(json.dumps(fc(feat(ROI, "ROI"), feat(SQUARE, "Tumor"))))
    ann = read_annotations(p)
    mask = ann.rasterize(0, 0, 100, 100, 1.0)
    assert mask[30, 30] == POSITIVE  # inside tumour
    assert mask[70, 70] == NEGATIVE  # inside ROI, outside tumour
    assert mask[90, 90] == IGNORE  # outside ROI: unlabelled
    assert (mask == POSITIVE).sum() == 40 * 40


def test_no_roi_means_whole_slide_annotated(tmp_path):
    p = tmp_path / "a.geojson"
    p.write_text(json.dumps([feat(SQUARE, "Tumor")]))  # bare-list form
    mask = read_annotations(p).rasterize(0, 0, 100, 100, 1.0)
    assert mask[90, 90] == NEGATIVE and mask[30, 30] == POSITIVE


def test_holes_are_not_tumour_and_downsample(tmp_path):
    hole = [[20, 20], [40, 20], [40, 40], [20, 40], [20, 20]]
    p = tmp_path / "a.geojson"
    p.write_text(json.dumps(fc(feat(SQUARE, "Tumor", holes=[hole]))))
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


def test_hole_in_roi_is_unlabelled():
    expect = np.full((40, 40), IGNORE, np.uint8)
    expect[5:25, 5:25] = NEGATIVE
    expect[10:20, 10:20] = IGNORE
    np.testing.assert_array_equal(_mask(("roi", RING)), expect)


def test_mask_image_round_trip():
    mask = np.full((60, 60), IGNORE, np.uint8)
    mask[10:50, 10:50] = NEGATIVE
    mask[20:30, 20:40] = POSITIVE
    ann = mask_to_annotations(mask, downsample=4.0)
    back = ann.rasterize(0, 0, 60, 60, 4.0)
    assert (back == mask).mean() > 0.97


def _boundary_windows(ann, n: int, size: float, integer: bool):
    b = ann.tumor.boundary
    for t in np.linspace(0, 1, n):
        q = b.interpolate(t, normalized=True)
        if integer:  # what training asks: integer origins, where centres meet integer edges
            yield int(q.x) - int(size) // 2, int(q.y) - int(size) // 2
        else:
            yield q.x - size / 2 + 0.37, q.y - size / 2 - 0.21


def test_culled_fill_equals_the_full_fill_on_edges_through_pixel_centres():
    # A diagonal edge through the centre (44, 136) of a pixel: cutting the outline at the
    # window moved that crossing by an ulp and flipped the pixel; culling edges cannot.
    ann = SlideAnnotations((Region("T", "tumor",
                                   Polygon([(40, 163), (52, 82), (33, 66), (86, 83)])),))
    np.testing.assert_array_equal(ann.rasterize(23, 75, 31, 31, 2.0),
                                  ann.rasterize(23, 75, 31, 31, 2.0, cull=False))
    rng = np.random.default_rng(0)
    for _ in range(300):
        pts = [tuple(p) for p in rng.integers(0, 120, (int(rng.integers(3, 9)), 2))]
        poly = shapely.make_valid(Polygon(pts))
        if poly.is_empty or poly.area == 0:
            continue
        one = SlideAnnotations((Region("T", "tumor", poly),))
        x0, y0 = (int(v) for v in rng.integers(-10, 80, 2))
        ds = float(rng.choice([1.0, 2.0, 4.0]))
        np.testing.assert_array_equal(one.rasterize(x0, y0, 24, 24, ds),
                                      one.rasterize(x0, y0, 24, 24, ds, cull=False))


def test_culled_fill_equals_the_full_fill_with_holes_across_the_edge():
    ring = [(5, 5), (95, 5), (95, 95), (5, 95)]
    hole = [(30, 30), (70, 30), (70, 70), (30, 70)]
    ann = SlideAnnotations((Region("T", "tumor", Polygon(ring, [hole])),
                            Region("N", "negative", Polygon([(60, 0), (80, 0), (80, 50),
                                                             (60, 50)]))))
    for x0, y0 in [(-3.3, -3.3), (25.5, 25.5), (50.1, 10.7), (65.0, 65.0), (90.2, 0.0)]:
        for ds in (0.5, 1.0, 3.0):
            np.testing.assert_array_equal(ann.rasterize(x0, y0, 17, 13, ds),
                                          ann.rasterize(x0, y0, 17, 13, ds, cull=False))


@pytest.mark.parametrize("folder,name", [("camelyon16-asap", "tumor_036.xml"),
                                         ("camelyon16-ncrf-json", "Tumor_076.json")])
def test_culled_fill_equals_the_full_fill_on_camelyon16(shared, folder, name):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # repaired self-intersections
        ann = read_annotations(shared / "annotations" / folder / name)
    for integer in (True, False):
        for ds in (1.0, 2.0):
            for x0, y0 in _boundary_windows(ann, 20, 128 * ds, integer):
                np.testing.assert_array_equal(
                    ann.rasterize(x0, y0, 128, 128, ds),
                    ann.rasterize(x0, y0, 128, 128, ds, cull=False))
