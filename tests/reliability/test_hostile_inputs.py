"""Issue 27's classes of hostile input, one regression test each: a clear one-line error and
exit 2 (or a correct result), never a traceback, and no garbage accepted with exit 0."""

from __future__ import annotations

import json
import shutil
import struct
from http import HTTPStatus
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mixsup.cli import INTERNAL_ERROR, main
from mixsup.config import load_config
from mixsup.errors import AnnotationError, ConfigError, MixsupError
from mixsup.evaluate.report import evaluate
from mixsup.labels.annotations import read_annotations
from mixsup.labels.formats.mask import write_png
from mixsup.slides import open_slide
from mixsup.storage import user_files
from tests.reliability.builders import cli_fails as _fails
from tests.reliability.builders import prediction_folder, small_slide


def _usage_error(capsys, argv: list[str], option: str) -> None:
    """argparse refuses the option's value: exit 2 with the usage line, naming the option."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and option in err


# -- evaluate: labels, predictions, threshold ---------------------------------------------
@pytest.fixture
def preds(tmp_path) -> Path:
    path = tmp_path / "predictions.csv"
    path.write_text("slide_id,probability\ns0,0.2\ns1,0.9\n")
    return path


@pytest.mark.parametrize("labels,needle", [
    ("slide_id,label\ns0,yes\ns1,1\n", "label 'yes'"),
    ("slide_id,label\ns0,NaN\ns1,1\n", "label 'NaN'"),
    ("slide_id,label\ns0,inf\ns1,1\n", "label 'inf'"),
    ("slide_id,label\ns0,2\ns1,1\n", "label '2'"),
    ("slide_id,label\ns0,-1\ns1,1\n", "label '-1'"),
    ("slide_id,label\ns0,0.5\ns1,1\n", "label '0.5'"),
    ("slide_id,label\ns0\ns1,1\n", "fewer fields"),
    ("slide_id,label\ns0,0\ns0,1\n", "more than once"),
    ("slide_id,label,label\ns0,1,0\n", "more than once"),
    ("slide_id\ns0\n", "missing column"),
    ("", "empty"),
])
def test_evaluate_refuses_bad_labels(tmp_path, preds, capsys, labels, needle):
    path = tmp_path / "labels.csv"
    path.write_text(labels)
    _fails(capsys, ["evaluate", str(preds), "--labels", str(path), "--out",
                    str(tmp_path / "ev")], needle, "labels.csv")
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_evaluate_refuses_missing_directory_and_binary_labels(tmp_path, preds, capsys):
    out = str(tmp_path / "ev")
    _fails(capsys, ["evaluate", str(preds), "--labels", str(tmp_path / "nope.csv"), "--out",
                    out], "cannot read", "nope.csv")
    _fails(capsys, ["evaluate", str(preds), "--labels", str(tmp_path), "--out", out],
           "cannot read")
    (tmp_path / "bin.csv").write_bytes(b"slide_id,label\n\xff\xfe\x00s0,1\n")
    _fails(capsys, ["evaluate", str(preds), "--labels", str(tmp_path / "bin.csv"), "--out",
                    out], "not UTF-8", "bin.csv")


@pytest.mark.parametrize("rows,needle", [
    ("s0,-0.5\ns1,0.9\n", "outside [0, 1]"),
    ("s0,1.5\ns1,0.9\n", "outside [0, 1]"),
    ("s0,1e308\ns1,0.9\n", "outside [0, 1]"),
    ("s0,many\ns1,0.9\n", "not a number"),
    ("s0,0.1\ns0,0.9\n", "more than once"),
    (",0.1\n", "no slide_id"),
])
def test_evaluate_refuses_impossible_predictions(tmp_path, capsys, rows, needle):
    (tmp_path / "predictions.csv").write_text("slide_id,probability\n" + rows)
    (tmp_path / "labels.csv").write_text("slide_id,label\ns0,0\ns1,1\n")
    _fails(capsys, ["evaluate", str(tmp_path / "predictions.csv"), "--labels",
                    str(tmp_path / "labels.csv"), "--out", str(tmp_path / "ev")],
           needle, "predictions.csv")


def test_evaluate_refuses_binary_predictions(tmp_path, capsys):
    (tmp_path / "predictions.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "labels.csv").write_text("slide_id,label\ns0,0\n")
    _fails(capsys, ["evaluate", str(tmp_path / "predictions.csv"), "--labels",
                    str(tmp_path / "labels.csv"), "--out", str(tmp_path / "ev")],
           "predictions.csv")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "2"])
def test_evaluate_refuses_a_bad_threshold(tmp_path, preds, capsys, value):
    (tmp_path / "labels.csv").write_text("slide_id,label\ns0,0\ns1,1\n")
    _fails(capsys, ["evaluate", str(preds), "--labels", str(tmp_path / "labels.csv"),
                    "--out", str(tmp_path / "ev"), "--threshold", value], "threshold")
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("meta,needle", [
    ("{bad", "invalid JSON"), ("{}", "operating_threshold"), ("[]", "operating_threshold"),
    ('{"operating_threshold": "half"}', "operating_threshold"),
    ('{"operating_threshold": NaN}', "operating_threshold"),
    ('{"operating_threshold": 7}', "operating_threshold"),
])
def test_evaluate_checks_the_prediction_folders_threshold(tmp_path, preds, capsys, meta,
                                                          needle):
    (tmp_path / "predict.json").write_text(meta)
    (tmp_path / "labels.csv").write_text("slide_id,label\ns0,0\ns1,1\n")
    _fails(capsys, ["evaluate", str(preds), "--labels", str(tmp_path / "labels.csv"),
                    "--out", str(tmp_path / "ev")], needle, "predict.json")


def test_metrics_json_is_json_when_a_metric_is_undefined(tmp_path, preds):
    (tmp_path / "labels.csv").write_text("slide_id,label\ns0,0\ns1,0\n")  # no positive
    evaluate(preds, tmp_path / "labels.csv", tmp_path / "ev")

    def refuse(token: str) -> None:
        raise AssertionError(f"metrics.json holds {token}")

    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text(), parse_constant=refuse)
    assert metrics["auc"] is None and metrics["n_neg"] == 2


# -- unusable output paths ------------------------------------------------------------------
def test_unusable_output_paths(tmp_path, preds, shapes_data, shared, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "labels.csv").write_text("slide_id,label\ns0,0\ns1,1\n")
    _fails(capsys, ["-q", "tile", str(shapes_data), "--preset", "tiny", "--out", str(a_file)],
           "a_file", "not a folder")
    _fails(capsys, ["evaluate", str(preds), "--labels", str(tmp_path / "labels.csv"), "--out",
                    str(a_file / "sub")], "a_file")
    xml = shared / "annotations" / "camelyon16-asap" / "tumor_009.xml"
    _fails(capsys, ["annotations", str(xml), str(a_file / "x.geojson")], "a_file")
    if Path("/proc").is_dir():
        _fails(capsys, ["annotations", str(xml), "/proc/nope/x.geojson"], "/proc/nope")


# -- annotation formats ---------------------------------------------------------------------
ASAP = ('<ASAP_Annotations><Annotations><Annotation PartOfGroup="tumor" Type="Polygon">'
        '<Coordinates>{}</Coordinates></Annotation></Annotations></ASAP_Annotations>')


def _asap(points: list[tuple[str, str, str]]) -> str:
    return ASAP.format("".join(f'<Coordinate Order="{o}" X="{x}" Y="{y}"/>'
                               for o, x, y in points))


@pytest.mark.parametrize("name,content,needle", [
    ("ncrf.json", '{"positive": [{"name": "a"}]}', "no list of vertices"),
    ("ncrf.json", '{"positive": [{"vertices": "abc"}]}', "no list of vertices"),
    ("ncrf.json", '{"positive": "abc"}', "not a list"),
    ("ncrf.json", '{"positive": [{"vertices": [[0, 0], [9, "x"], [9, 9]]}]}', "finite"),
    ("ncrf.json", '{"positive": [{"vertices": [[0, 0], [9], [9, 9]]}]}', "not [x, y]"),
    ("asap.xml", _asap([("0", "nan", "1"), ("1", "5", "1"), ("2", "5", "5")]), "finite"),
    ("asap.xml", _asap([("0", "inf", "1"), ("1", "5", "1"), ("2", "5", "5")]), "finite"),
    ("asap.xml", _asap([("0", "1", "1"), ("abc", "5", "1"), ("2", "5", "5")]), "Order='abc'"),
    ("asap.xml", _asap([("0", "1", "1"), ("inf", "5", "1"), ("2", "5", "5")]), "Order='inf'"),
    ("imagescope.xml", '<Annotations><Annotation Name="Tumor"><Regions><Region><Vertices>'
     '<Vertex X="nan" Y="0"/><Vertex X="9" Y="0"/><Vertex X="9" Y="9"/></Vertices></Region>'
     '</Regions></Annotation></Annotations>', "finite"),
    ("coords.geojson", '{"type": "Feature", "properties": {"name": "tumor"}, "geometry": '
     '{"type": "Polygon", "coordinates": [[[true, false], [9, 0], [9, 9], [true, false]]]}}',
     "not a number"),
    ("deep.geojson", "[" * 100_000, "nests more than"),
    ("deep.xml", "<a>" * 100_000 + "</a>" * 100_000, "nests more than"),
    ("big.geojson", '{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", '
     '"coordinates": [[[0, 0], [1, 0], [1, ' + "1" * 5000 + "], [0, 0]]]}}", "4300 digits"),
    ("bad.geojson", b"\xff\xfe{\x00", "annotation"),
    ("props.geojson", '{"type": "Feature", "properties": [1], "geometry": {"type": "Polygon",'
     ' "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 0]]]}}', "unknown annotation class"),
])
def test_bad_annotation_files(tmp_path, capsys, name, content, needle):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(AnnotationError, match=".") as err:
        read_annotations(path)
    assert needle in str(err.value) and name in str(err.value)
    _fails(capsys, ["annotations", str(path), str(tmp_path / "out.geojson")], name)


def test_a_polygon_inside_a_geometry_collection_is_kept(tmp_path):
    square = [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]
    path = tmp_path / "gc.geojson"
    parts = [{"type": "Polygon", "coordinates": square}, {"type": "Point", "coordinates": [1, 1]}]
    path.write_text(json.dumps({"type": "Feature", "properties": {"name": "Tumor"},
                                "geometry": {"type": "GeometryCollection", "geometries": parts}}))
    ann = read_annotations(path)
    assert ann.tumor.area == pytest.approx(100.0)


def test_dev_zero_and_oversized_annotation_files(tmp_path, capsys, monkeypatch):
    if Path("/dev/zero").exists():
        _fails(capsys, ["annotations", "/dev/zero", str(tmp_path / "x.geojson")], "/dev/zero")
    big = tmp_path / "big.geojson"
    big.write_text("[" + " " * 4096 + "]")
    monkeypatch.setattr(user_files, "MAX_ANNOTATION_BYTES", 1024)
    with pytest.raises(AnnotationError, match="larger than"):
        read_annotations(big)


def test_a_tiny_mask_for_a_large_slide_is_refused(tmp_path):
    mask = tmp_path / "mask.png"
    write_png(mask, np.ones((1, 1), np.uint8))
    with pytest.raises(AnnotationError, match="times smaller than its slide"):
        read_annotations(mask, slide_dimensions=(2220, 2967))
    write_png(mask, np.ones((93, 70), np.uint8))  # 32x: fine
    assert read_annotations(mask, slide_dimensions=(2220, 2967)).tumor.area > 0


@pytest.mark.parametrize("value", ["0", "nan", "1e-9", "-1", "1e12", "inf"])
def test_annotations_downsample_out_of_range(shared, tmp_path, capsys, value):
    xml = shared / "annotations" / "camelyon16-asap" / "tumor_009.xml"
    _usage_error(capsys, ["annotations", str(xml), str(tmp_path / "m.png"), "--downsample",
                          value], "--downsample")
    assert not (tmp_path / "m.png").exists()


# -- config and --set ---------------------------------------------------------------------
@pytest.mark.parametrize("override,needle", [
    ("x=!!python/object/apply:os.system ['echo pwned']", "python/object/apply"),
    ("seed=" + "1" * 5000, "4300 digits"),
    ("seed=" + "[" * 1000 + "]" * 1000, "nests more than"),
    ("tiling.mpp=.inf", "tiling.mpp"), ("tiling.mpp=inf", "tiling.mpp"),
    ("tiling.mpp=.nan", "tiling.mpp"), ("tiling.mpp=1e-300", "tiling.mpp"),
    ("tiling.mpp=true", "boolean"), ("reader.mpp=true", "boolean"),
    ("reader.mpp=0", "reader.mpp"), ("reader.mpp=1000", "reader.mpp"),
    ("tissue.thumbnail_mpp=.inf", "finite"), ("stage1.lr=.nan", "finite"),
    ("stage1.ratio=[1e308,1e308,1e308]", "positive sum"),
])
def test_hostile_overrides(capsys, override, needle):
    with pytest.raises(ConfigError, match=".") as err:
        load_config("tiny", overrides=[override])
    assert needle in str(err.value)
    _fails(capsys, ["config", "--set", override])


@pytest.mark.parametrize("content", [
    "tiling:\n  mpp: 0.5\n".encode("utf-16"),
    b"a: " + b"[" * 10_000,
    b"seed: " + b"1" * 5000,
    b"x: !!python/object/apply:os.system ['echo pwned']",
    b"\x00\x01\x02",
])
def test_hostile_config_files(tmp_path, capsys, content):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config("tiny", files=[path])
    _fails(capsys, ["config", "--config", str(path)], "bad.yaml")


# -- MPP ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e-300", "1e308"])
def test_impossible_mpp_options(tmp_path, capsys, value):
    slide = small_slide(tmp_path / "s.tiff")
    _usage_error(capsys, ["info", str(slide), "--mpp", value], "--mpp")
    with pytest.raises(MixsupError, match="plausible"):
        open_slide(slide, mpp=float(value))


@pytest.mark.parametrize("mpp", [1e8, 1e-5])
def test_implausible_metadata_mpp_is_no_mpp(tmp_path, mpp):
    slide = open_slide(small_slide(tmp_path / "s.tiff", mpp=mpp))
    assert slide.info.mpp is None and slide.info.mpp_source.startswith("implausible")
    with pytest.raises(MixsupError, match="metadata MPP is implausible"):
        _ = slide.mpp
    assert open_slide(tmp_path / "s.tiff", mpp=0.5).mpp == 0.5  # the override still works


def test_aperio_mpp_of_1e308(tmp_path):
    path = tmp_path / "ap.svs"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.full((512, 512, 3), 200, np.uint8), tile=(256, 256), photometric="rgb",
                  compression="zlib", metadata=None,
                  description="Aperio Image Library v12.0.5\n512x512 [0,0 512x512] (256x256) "
                  "JPEG/RGB Q=70|AppMag = 20|MPP = 1e308")
    slide = open_slide(path)
    assert slide.info.vendor == "aperio" and slide.info.mpp is None
    with pytest.raises(MixsupError, match="1e\\+308"):
        _ = slide.mpp


# -- slides ---------------------------------------------------------------------------------
def test_truncated_real_slide(shared, tmp_path, capsys):
    raw = (shared / "slides" / "CMU-1-Small-Region.svs").read_bytes()
    cut = tmp_path / "cut.svs"
    cut.write_bytes(raw[:1_900_000])
    _fails(capsys, ["info", str(cut)], "cut.svs", "truncated")


def test_short_tile_byte_counts(tmp_path, capsys):
    path = small_slide(tmp_path / "short.tiff", size=1024)
    with tifffile.TiffFile(path) as tif:
        entry = tif.pages[0].tags["TileByteCounts"].offset
    raw = bytearray(path.read_bytes())
    tag, dtype, _, _ = struct.unpack("<HHQQ", raw[entry:entry + 20])  # a BigTIFF entry
    raw[entry:entry + 20] = struct.pack("<HHQQ", tag, dtype, 1, 5000)
    path.write_bytes(bytes(raw))
    err = _fails(capsys, ["info", str(path)], "short.tiff", "byte counts")
    assert "AttributeError" not in err


# -- slides.csv and validate -----------------------------------------------------------------
def _dataset(shapes_data: Path, tmp_path: Path, table: str | None = None) -> Path:
    data = tmp_path / "data"
    shutil.copytree(shapes_data, data)
    if table is not None:
        (data / "slides.csv").write_text(table)
        shutil.rmtree(data / "annotations")
    return data


@pytest.mark.parametrize("table,needle", [
    ("slide_id,path,label,split\n", "lists no slide"),
    ("slide_id,path,label,split,label\ns,slides/slide_000.tiff,1,train,0\n", "more than once"),
    ("slide_id,path,label,split\n\"a\x00b\",slides/slide_000.tiff,1,train\n", "NUL"),
    ("slide_id,path,label,split\n\"a\nb\",slides/slide_000.tiff,1,train\n", "control"),
    ("slide_id,path,label,split,node_class\ns,slides/slide_000.tiff,1,train,bogus\n",
     "node_class 'bogus'"),
])
def test_validate_refuses_bad_tables(shapes_data, tmp_path, capsys, table, needle):
    data = _dataset(shapes_data, tmp_path, table)
    _fails(capsys, ["validate", str(data), "--fast"], needle, "slides.csv")


def test_validate_opens_every_slide(shapes_data, shared, tmp_path, capsys):
    data = _dataset(shapes_data, tmp_path)
    (data / "slides" / "empty.tiff").write_bytes(b"")
    shutil.copyfile(shared / "slides" / "unreadable.svs", data / "slides" / "corrupt.svs")
    rows = ["zero,slides/empty.tiff,0,train,A", "passwd,/etc/passwd,0,train,A",
            "corrupt,slides/corrupt.svs,0,train,A"]
    if Path("/proc/self/mem").exists():
        rows.append("mem,/proc/self/mem,0,train,A")
    with open(data / "slides.csv", "a") as fh:
        fh.write("\n".join(rows) + "\n")
    err = _fails(capsys, ["validate", str(data)], f"{len(rows)} problem(s)", "empty.tiff",
                 "/etc/passwd", "corrupt.svs")
    assert "slide_000" not in err  # the good slides are not blamed
    assert main(["validate", str(data), "--fast"]) == 0  # --fast does not open them
    assert "not opened" in capsys.readouterr().out


def test_validate_reports_a_slide_without_mpp(shapes_data, shared, tmp_path, capsys):
    data = _dataset(shapes_data, tmp_path)
    shutil.copyfile(shared / "slides" / "tcga-cr-7395-01a-01-ts1.svs", data / "slides" / "t.svs")
    with open(data / "slides.csv", "a") as fh:
        fh.write("tcga,slides/t.svs,0,train,A\n")
    _fails(capsys, ["validate", str(data)], "t.svs", "--mpp")
    assert main(["validate", str(data), "--mpp", "0.5"]) == 0
    assert "opened 7 slide(s)" in capsys.readouterr().out


def test_a_slide_id_with_nul_is_refused_before_tiling(shapes_data, tmp_path, capsys):
    data = _dataset(shapes_data, tmp_path,
                    'slide_id,path,label,split\n"x\x00",slides/slide_000.tiff,1,train\n')
    _fails(capsys, ["-q", "tile", str(data), "--preset", "tiny", "--out", str(tmp_path / "t")],
           "NUL")


# -- the viewer -------------------------------------------------------------------------------
def test_view_refuses_bad_ports_and_hosts(tmp_path, capsys):
    from mixsup.view.server import make_server

    _usage_error(capsys, ["view", str(tmp_path), "--port", "70000"], "--port")
    for host, port in (("999.1.1.1", 0), ("::zz", 0)):
        with pytest.raises(MixsupError, match=f"cannot listen on {host}"):
            make_server(None, host, port)  # type: ignore[arg-type]


@pytest.mark.parametrize("change,needle", [
    ({"meta": "{bad"}, "invalid JSON"),
    ({"meta": {}}, "operating_threshold"),
    ({"meta": {"operating_threshold": "x"}}, "operating_threshold"),
    ({"record": "{bad"}, "invalid JSON"),
    ({"record": {"slide_id": "s0"}}, "no slide path"),
    ({"record": {"path": "SLIDE", "n_patches": "many"}}, "n_patches"),
    ({"record": {"path": "SLIDE", "n_patches": True}}, "n_patches"),
    ({"record": {"path": "SLIDE", "topk": {}}}, "topk"),
    ({"record": {"path": "SLIDE", "topk": [{"rank": 1, "x": 0, "y": 0, "size": 9}]}},
     "max_pixel_prob"),
    ({"record": {"path": "SLIDE", "topk": [{"x": 0, "y": 0, "size": 9,
                                            "max_pixel_prob": 7}]}}, "max_pixel_prob"),
])
def test_view_and_evaluate_check_the_prediction_folder(tmp_path, change, needle):
    from mixsup.view.catalog import load_catalog

    slide = small_slide(tmp_path / "s.tiff")
    record, meta = change.get("record"), change.get("meta")
    if isinstance(record, dict) and record.get("path") == "SLIDE":
        record = {**record, "path": str(slide)}
    pred = prediction_folder(tmp_path / "pred", slide,
                             record=None if isinstance(record, str) else record,
                             meta=None if isinstance(meta, str) else meta)
    if isinstance(record, str):
        (pred / "slides" / "s0.json").write_text(record)
    if isinstance(meta, str):
        (pred / "predict.json").write_text(meta)
    with pytest.raises(MixsupError, match=needle):
        load_catalog(pred)


def test_a_good_hand_written_prediction_folder_loads(tmp_path):
    from mixsup.view.catalog import load_catalog

    pred = prediction_folder(tmp_path / "pred", small_slide(tmp_path / "s.tiff"))
    catalog = load_catalog(pred)
    assert [s.slide_id for s in catalog.slides] == ["s0"]
    assert catalog.slides[0].topk[0]["max_pixel_prob"] == 0.9


def test_an_empty_probability_map_is_the_maps_fault(tmp_path):
    from mixsup.view.catalog import load_catalog
    from mixsup.view.viewer import HTTPError, Viewer

    pred = prediction_folder(tmp_path / "pred", small_slide(tmp_path / "s.tiff"))
    (pred / "probmaps" / "s0.zarr").mkdir(parents=True)  # empty: no array in it
    viewer = Viewer(load_catalog(pred))
    try:
        body, _, _ = viewer.route("/api/slides/s0")  # the slide itself is served
        info = json.loads(body)
        assert info["overlay"] is None and "probability map" in info["overlay_error"]
        with pytest.raises(HTTPError) as err:
            viewer.route("/dzi/s0/overlay.dzi")
        assert err.value.status == HTTPStatus.NOT_FOUND
        assert "probability map cannot be read" in str(err.value)
    finally:
        viewer.close()


# -- the CLI's last line of defence ---------------------------------------------------------
def test_an_unexpected_error_is_one_line_with_a_report_hint(monkeypatch, capsys):
    import mixsup.cli.data as data

    def broken(args):
        raise RuntimeError("something\nnobody foresaw")

    monkeypatch.setattr(data, "cmd_info", broken)
    with pytest.raises(RuntimeError):  # tests calling main see the bug itself
        main(["info", "x.svs"])
    capsys.readouterr()
    assert main(["info", "x.svs"], catch_unexpected=True) == INTERNAL_ERROR  # the executable
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "RuntimeError: something nobody foresaw" in err and "report" in err and "-v" in err
    assert main(["-v", "info", "x.svs"], catch_unexpected=True) == INTERNAL_ERROR
    assert "Traceback" in capsys.readouterr().err


def test_the_executable_catches_the_unexpected():
    """The ``mixsup`` executable's entry point goes through the handler, in a process of its
    own: a bug is one line and exit 70."""
    import subprocess
    import sys

    probe = ("import sys, mixsup.cli as cli, mixsup.cli.data as data\n"
             "data.cmd_info = lambda args: 1 / 0\n"
             "sys.argv = ['mixsup', 'info', 'x.svs']\n"
             "sys.exit(cli.entry())\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == INTERNAL_ERROR, done.stderr
    assert done.stderr.startswith("error: unexpected ZeroDivisionError")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("key", ["bundle", "mode"])
def test_a_control_character_in_predict_json_is_the_folders_fault(tmp_path, key):
    from mixsup.view.catalog import load_catalog

    pred = prediction_folder(tmp_path / "pred", small_slide(tmp_path / "s.tiff"),
                             meta={"operating_threshold": 0.5, "mode": "mixed",
                                   key: "/tmp/x\x00y"})
    with pytest.raises(MixsupError, match="control character") as err:
        load_catalog(pred)
    assert str(err.value.path) == str(pred / "predict.json")
