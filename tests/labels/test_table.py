from __future__ import annotations

import pytest

from mixsup.errors import DatasetError
from mixsup.labels.table import load_dataset


def _write(root, text, slides=("a", "b")):
    (root / "slides").mkdir(exist_ok=True)
    for s in slides:
        (root / "slides" / f"{s}.tiff").write_bytes(b"x")
    (root / "slides.csv").write_text(text)


def test_loads_valid_table(tmp_path):
    _write(tmp_path, "slide_id,path,label,split,center\n"
                     "a,slides/a.tiff,1,train,X\nb,slides/b.tiff,,test,Y\n")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "a.geojson").write_text("[]")
    ds = load_dataset(tmp_path)
    assert [s.label for s in ds.slides] == [1, None]
    assert ds.by_id("a").annotation.name == "a.geojson" and ds.by_id("b").annotation is None
    assert ds.summary()["train"]["positive"] == 1


def test_every_problem_reported_at_once(tmp_path):
    _write(tmp_path, "slide_id,path,label,split\n"
                     "a,slides/a.tiff,2,train\n"
                     "a,slides/a.tiff,1,train\n"
                     "c,slides/missing.tiff,0,dev\n"
                     "d,../outside.tiff,0,train\n")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "zzz.xml").write_text("<x/>")
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    for needle in ("appears 2 times", "label '2'", "does not exist", "split 'dev'",
                   "escapes the dataset directory", "zzz.xml", "slides.csv"):
        assert needle in msg, needle


def test_missing_column(tmp_path):
    _write(tmp_path, "slide_id,path,split\na,slides/a.tiff,train\n")
    with pytest.raises(DatasetError, match="missing column.*label"):
        load_dataset(tmp_path)


def test_missing_table(tmp_path):
    with pytest.raises(DatasetError, match="no slides.csv"):
        load_dataset(tmp_path)
