"""Property-based fuzzing of every parser of a user's file and of the viewer's routes.

The one invariant: a ``MixsupError`` (what the CLI prints on one line, exit 2) or a correct
result, never another exception. Inputs are near-valid documents with hostile values in their
fields (NaN, booleans, 5000-digit integers, control characters, wrong types, deep nesting),
plus truncations of them and raw bytes. The default profile bounds the examples per test
(tests/conftest.py); ``--hypothesis-profile=long`` runs deeper.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mixsup.config import Config, load_config  # noqa: E402
from mixsup.errors import MixsupError  # noqa: E402
from tests.reliability.builders import prediction_folder, small_slide  # noqa: E402


def clean(call: Callable[[], Any]) -> Any:
    """The invariant: the call returns, or raises a MixsupError; anything else fails."""
    try:
        return call()
    except MixsupError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return exc


# -- values a hostile file puts where a number or a name belongs ----------------------------
NASTY_TEXT = st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "1e308", "-1", "0", "1",
                              "0.5", "2", "true", "x\x00y", "a\nb", "../..", "é", "\ufeff",
                              "1" * 5000, "[" * 200, "{bad", "null"])
NUMBERS = st.one_of(st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.just(10**400), st.booleans())
SCALARS = st.one_of(st.none(), NUMBERS, NASTY_TEXT, st.text(max_size=20))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


def _dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()


@st.composite
def mangled(draw: st.DrawFn, document: bytes) -> bytes:
    """The document as written, truncated, with one byte changed, or buried in nesting."""
    how = draw(st.sampled_from(["as is", "as is", "cut", "flip", "nest"]))
    if how == "cut" and document:
        return document[:draw(st.integers(0, len(document) - 1))]
    if how == "flip" and document:
        i = draw(st.integers(0, len(document) - 1))
        return document[:i] + bytes([draw(st.integers(0, 255))]) + document[i + 1:]
    if how == "nest":
        depth = draw(st.sampled_from([63, 65, 1000, 100_000]))
        return b"[" * depth + document + b"]" * depth
    return document


# -- annotations ----------------------------------------------------------------------------
def points() -> st.SearchStrategy[list[Any]]:
    good = st.tuples(st.integers(0, 700), st.integers(0, 700)).map(list)
    return st.lists(st.one_of(good, good, good, st.lists(NUMBERS, max_size=3), SCALARS),
                    max_size=8)


GEOMETRY = st.fixed_dictionaries({
    "type": st.sampled_from(["Polygon", "MultiPolygon", "Point", "LineString",
                             "GeometryCollection", "Bogus"]),
    "coordinates": st.one_of(st.lists(points(), max_size=2),
                             st.lists(st.lists(points(), max_size=2), max_size=2), SCALARS),
}) | st.builds(lambda ps: {"type": "GeometryCollection", "geometries": [
    {"type": "Polygon", "coordinates": [p]} for p in ps]}, st.lists(points(), max_size=3))
CLASS_NAMES = st.one_of(st.sampled_from(["Tumor", "tumor", "negative", "ROI", "other"]), SCALARS)
FEATURE = st.fixed_dictionaries({
    "type": st.just("Feature"), "geometry": st.one_of(GEOMETRY, GEOMETRY, SCALARS),
    "properties": st.one_of(st.fixed_dictionaries({"classification": st.one_of(
        st.fixed_dictionaries({"name": CLASS_NAMES}), CLASS_NAMES)}),
        st.fixed_dictionaries({"name": CLASS_NAMES}), SCALARS)})
GEOJSON = st.one_of(
    st.fixed_dictionaries({"type": st.just("FeatureCollection"),
                           "features": st.one_of(st.lists(FEATURE, max_size=4), SCALARS)}),
    st.lists(FEATURE, max_size=4), FEATURE, JSON_VALUES).map(_dump)
NCRF = st.fixed_dictionaries({
    "positive": st.one_of(st.lists(st.fixed_dictionaries(
        {"name": st.text(max_size=5), "vertices": st.one_of(points(), SCALARS)}), max_size=3),
        SCALARS),
    "negative": st.lists(st.fixed_dictionaries({"vertices": points()}), max_size=2),
}).map(_dump)
ATTR = st.one_of(st.integers(-10, 800).map(str), NASTY_TEXT, st.text(max_size=6))


@st.composite
def asap_xml(draw: st.DrawFn) -> bytes:
    anns = []
    for _ in range(draw(st.integers(0, 3))):
        coords = "".join(f"<Coordinate Order={quoteattr(draw(ATTR))} X={quoteattr(draw(ATTR))}"
                         f" Y={quoteattr(draw(ATTR))}/>" for _ in range(draw(st.integers(0, 6))))
        kind = draw(st.sampled_from(["Polygon", "Spline", "Dot", "Rectangle"]))
        group = draw(st.sampled_from(["metastasis", "negative", "_0", "_2", "Odd", ""]))
        anns.append(f'<Annotation Name="a" Type="{kind}" PartOfGroup={quoteattr(group)}>'
                    f"<Coordinates>{coords}</Coordinates></Annotation>")
    return f"<ASAP_Annotations><Annotations>{''.join(anns)}</Annotations></ASAP_Annotations>" \
        .encode()


@st.composite
def imagescope_xml(draw: st.DrawFn) -> bytes:
    regions = []
    for _ in range(draw(st.integers(1, 3))):
        verts = "".join(f"<Vertex X={quoteattr(draw(ATTR))} Y={quoteattr(draw(ATTR))}/>"
                        for _ in range(draw(st.integers(0, 5))))
        neg = draw(st.sampled_from(["0", "1", "x"]))
        regions.append(f'<Region NegativeROA="{neg}"><Vertices>{verts}</Vertices></Region>')
    name = draw(st.sampled_from(["Tumor", "Negative", "", "Other"]))
    return (f'<Annotations><Annotation Name="{name}" Id="1"><Regions>{"".join(regions)}'
            "</Regions></Annotation></Annotations>").encode()


ANNOTATION_FILES = st.one_of(GEOJSON, NCRF, asap_xml(), imagescope_xml(),
                             st.binary(max_size=64)).flatmap(mangled)


@given(raw=ANNOTATION_FILES, dims=st.sampled_from([None, (768, 768)]),
       label=st.sampled_from([None, 0, 1]))
def test_fuzz_annotation_files(tmp_path, raw, dims, label):
    from mixsup.labels.annotations import read_annotations

    path = tmp_path / "ann.json"
    path.write_bytes(raw)
    got = clean(lambda: read_annotations(path, slide_dimensions=dims, label=label))
    if not isinstance(got, MixsupError):  # a correct result: finite outlines inside the slide
        for region in got.regions:
            assert region.geometry.is_valid and region.geometry.area > 0
            assert all(math.isfinite(v) for v in region.geometry.bounds)


MASK_DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, bool, np.float32])


@given(shape=st.sampled_from([(1, 1), (24, 24), (23, 25), (24, 24, 3), (24, 24, 4), (3, 300),
                              (24, 24, 2), (0, 5)]),
       dtype=MASK_DTYPES, values=st.lists(st.sampled_from([0, 1, 2, 255, 7]), min_size=1,
                                          max_size=3),
       fmt=st.sampled_from(["png", "tiff", "bytes"]),
       dims=st.sampled_from([(768, 768), (2220, 2967), (24, 24), (1, 1)]),
       chosen=st.sampled_from([None, {0: "negative", 255: "tumor"}, {1: "ignore"}]),
       junk=st.binary(max_size=40))
def test_fuzz_mask_images(tmp_path, shape, dtype, values, fmt, dims, chosen, junk):
    import tifffile
    from PIL import Image

    from mixsup.config import AnnotationConfig
    from mixsup.labels.annotations import read_annotations

    rng = np.random.default_rng(len(junk))
    mask = rng.choice(values, size=shape).astype(dtype) if 0 not in shape else np.zeros(
        shape, dtype)
    path = tmp_path / "mask"
    if fmt == "tiff" and 0 not in shape:
        tifffile.imwrite(path, mask, photometric="minisblack")
    elif fmt == "png" and mask.dtype == np.uint8 and mask.ndim in (2, 3) and 0 not in shape:
        Image.fromarray(mask).save(path, format="PNG")
    else:  # an image's magic bytes and then nothing sensible
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + junk)
    clean(lambda: read_annotations(path, AnnotationConfig(mask_values=chosen), dims))


# -- slides.csv -----------------------------------------------------------------------------
COLUMNS = st.lists(st.sampled_from(["slide_id", "path", "label", "split", "center", "patient",
                                    "node_class", "label", "", "x\x00"]), max_size=8)
CELLS = st.one_of(st.sampled_from(["s0", "s1", "slides/slide_000.tiff", "slides/nope.tiff",
                                   "../../etc/passwd", "/etc/passwd", "/dev/zero", "train",
                                   "val", "test", "itc", "bogus", "1", "0"]), NASTY_TEXT,
                  st.text(max_size=10))


@st.composite
def tables(draw: st.DrawFn) -> bytes:
    header = draw(st.one_of(st.just(["slide_id", "path", "label", "split"]), COLUMNS))
    rows = draw(st.lists(st.lists(CELLS, max_size=len(header) + 1), max_size=4))

    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\n\r') else v

    text = "\n".join(",".join(map(cell, r)) for r in [header, *rows]) + "\n"
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_data")
    (root / "slides").mkdir()
    small_slide(root / "slides" / "slide_000.tiff")
    return root


@given(raw=st.one_of(tables(), st.binary(max_size=80)).flatmap(mangled))
def test_fuzz_slides_csv(small_dataset, raw):
    from mixsup.labels.table import load_dataset

    (small_dataset / "slides.csv").write_bytes(raw)
    got = clean(lambda: load_dataset(small_dataset))
    if not isinstance(got, MixsupError):
        assert len(got) > 0
        for rec in got.slides:
            assert rec.label in (None, 0, 1) and rec.split in ("train", "val", "test")
            assert rec.slide_id.isprintable() and "/" not in rec.slide_id


# -- config YAML and --set -------------------------------------------------------------------
KEYS = st.sampled_from(["tiling.mpp", "reader.mpp", "seed", "stage1.ratio", "stage1.threshold",
                        "annotations.mask_values", "annotations.class_map", "tiling",
                        "x", "tiling.mpp.deeper", "", "stage1.rounds"])
YAML_VALUES = st.one_of(NASTY_TEXT, st.text(max_size=20), st.sampled_from([
    "!!python/object/apply:os.system ['true']", "{0: negative, 255: tumor}", "[2, 1, 7]",
    ".inf", ".nan", "1e-300", "0.5", "true", "&a [*a]", "{a: 1", "!!binary aGk=", "~"]))


@given(key=KEYS, value=YAML_VALUES)
def test_fuzz_set_overrides(key, value):
    got = clean(lambda: load_config("tiny", overrides=[f"{key}={value}"]))
    if isinstance(got, Config):
        assert 0.01 <= got.tiling.mpp <= 100
        assert got.reader.mpp is None or 0.01 <= got.reader.mpp <= 100


@given(doc=st.one_of(
    st.dictionaries(st.sampled_from(["tiling", "reader", "seed", "stage1", "bogus"]),
                    JSON_VALUES, max_size=3),
    JSON_VALUES).map(lambda d: json.dumps(d).encode()).flatmap(mangled)
    | st.binary(max_size=60) | YAML_VALUES.map(lambda v: f"seed: {v}\n".encode()))
def test_fuzz_config_files(tmp_path, doc):
    path = tmp_path / "c.yaml"
    path.write_bytes(doc)  # JSON is YAML: the same hostile values, as a file
    clean(lambda: load_config("tiny", files=[path]))


# -- predictions and labels CSVs --------------------------------------------------------------
PROBS = st.one_of(st.floats(-2, 2).map(repr), NASTY_TEXT)
LABELS = st.one_of(st.sampled_from(["0", "1", "", "0.0", "1.0"]), NASTY_TEXT)
IDS = st.sampled_from(["s0", "s1", "s2", "", "s0 "])


@given(preds=st.lists(st.tuples(IDS, PROBS), max_size=4),
       labels=st.lists(st.tuples(IDS, LABELS, st.sampled_from(["A", "B", ""])), max_size=4),
       pred_header=st.sampled_from(["slide_id,probability", "slide_id,probability,probability",
                                    "probability", "slide_id,prob"]),
       threshold=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
       binary=st.booleans())
def test_fuzz_evaluate(tmp_path, preds, labels, pred_header, threshold, binary):
    from mixsup.evaluate.report import evaluate

    def row(cells: tuple[str, ...]) -> str:
        return ",".join('"' + c.replace('"', '""') + '"' for c in cells)

    pred_csv, label_csv = tmp_path / "predictions.csv", tmp_path / "labels.csv"
    pred_csv.write_text(pred_header + "\n" + "\n".join(map(row, preds)) + "\n")
    label_csv.write_text("slide_id,label,center\n" + "\n".join(map(row, labels)) + "\n")
    if binary:
        label_csv.write_bytes(label_csv.read_bytes() + b"\xff\xfe")
    got = clean(lambda: evaluate(pred_csv, label_csv, tmp_path / "ev", threshold))
    if not isinstance(got, MixsupError):
        json.loads((tmp_path / "ev" / "metrics.json").read_text(),
                   parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"))
        assert 0 <= got.overall.operating_threshold <= 1


# -- a prediction folder's JSON, and the viewer's routes ---------------------------------------
@pytest.fixture(scope="module")
def slide_file(tmp_path_factory) -> Path:
    return small_slide(tmp_path_factory.mktemp("fuzz_slide") / "s.tiff")


TOPK_ROW = st.fixed_dictionaries({"rank": SCALARS, "x": NUMBERS, "y": NUMBERS,
                                  "size": NUMBERS, "max_pixel_prob": NUMBERS,
                                  "patch_prob": st.one_of(st.none(), NUMBERS)})


@given(meta=st.one_of(st.fixed_dictionaries({"operating_threshold": NUMBERS,
                                             "mode": SCALARS, "bundle": SCALARS}),
                      JSON_VALUES),
       record=st.one_of(st.fixed_dictionaries({
           "path": st.one_of(st.just("SLIDE"), SCALARS), "n_patches": NUMBERS,
           "topk": st.one_of(st.lists(TOPK_ROW, max_size=3), SCALARS)}), JSON_VALUES),
       cut=st.booleans())
def test_fuzz_prediction_folder(tmp_path, slide_file, meta, record, cut):
    from mixsup.view.catalog import load_catalog

    if isinstance(record, dict) and record.get("path") == "SLIDE":
        record["path"] = str(slide_file)
    pred = prediction_folder(tmp_path / "pred", slide_file, record=record, meta=meta)
    if cut:
        text = (pred / "slides" / "s0.json").read_text()
        (pred / "slides" / "s0.json").write_text(text[: len(text) // 2])
    got = clean(lambda: load_catalog(pred))
    if not isinstance(got, MixsupError):
        json.dumps([s.summary() for s in got.slides])  # what /api/slides serves


@pytest.fixture(scope="module")
def viewer(tmp_path_factory, slide_file):
    from mixsup.view.catalog import load_catalog
    from mixsup.view.viewer import Viewer

    pred = prediction_folder(tmp_path_factory.mktemp("fuzz_view") / "pred", slide_file)
    v = Viewer(load_catalog(pred))
    yield v
    v.close()


ROUTE_PARTS = st.one_of(st.sampled_from(["s0", "s1", "..", "%2e%2e", "s0%00", "slide",
                                         "overlay", "index.html", ""]), st.text(max_size=8))


@given(path=st.one_of(
    st.builds(lambda i, layer, lvl, x, y, ext: f"/dzi/{i}/{layer}_files/{lvl}/{x}_{y}.{ext}",
              ROUTE_PARTS, st.sampled_from(["slide", "overlay"]), st.integers(0, 999),
              st.integers(0, 9_999_999), st.integers(0, 9_999_999),
              st.sampled_from(["jpeg", "png"])),
    st.builds(lambda i, layer: f"/dzi/{i}/{layer}.dzi", ROUTE_PARTS,
              st.sampled_from(["slide", "overlay"])),
    st.builds(lambda p, i: f"{p}{i}", st.sampled_from(["/api/slides/", "/slide/", "/static/",
                                                       "/", "/api/slides"]), ROUTE_PARTS),
    st.text(max_size=30)))
def test_fuzz_viewer_routes(viewer, path):
    from http import HTTPStatus

    from mixsup.view.viewer import HTTPError

    try:
        body, ctype, _ = viewer.route(path)
    except HTTPError as exc:  # a clear 4xx: the request's fault, never the server's 500
        assert 400 <= exc.status < 500 and str(exc)
        return
    assert isinstance(body, bytes) and ctype
    if ctype == "application/json":
        json.loads(body)
    assert HTTPStatus.OK  # a served route


@given(header=st.one_of(st.text(max_size=40), st.sampled_from(
    ["[::1]:8765", "[::1", "localhost:99999", "LOCALHOST", ":", "[]", "127.0.0.1:a"])))
def test_fuzz_host_header(header):
    from mixsup.view.server import LOOPBACK_NAMES, _host_name

    name = _host_name(header)
    assert isinstance(name, str)
    if name in LOOPBACK_NAMES:  # only a loopback Host header is let through on loopback
        assert any(n in header.lower() for n in LOOPBACK_NAMES)
