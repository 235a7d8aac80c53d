"""The server's answers: pages and tiles, a corpus of hostile requests, and a bounded load."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mixsup.view.catalog import load_catalog


def raw(server, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client-side normalisation); (status, whole answer)."""
    with socket.create_connection(server.server_address[:2], timeout=30) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)  # every answer has a status line
    return (int(m[1]) if m else 0), data


def get(server, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    return raw(server, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                       .encode())


def test_pages_api_and_tiles(served, predicted):
    slides = json.loads(get(served, "/api/slides")[1].split(b"\r\n\r\n", 1)[1])["slides"]
    assert len(slides) == len(load_catalog(predicted).slides)
    sid = slides[0]["slide_id"]
    for path in ("/", f"/slide/{sid}", "/static/slide.js", f"/dzi/{sid}/slide.dzi",
                 f"/dzi/{sid}/overlay.dzi", f"/dzi/{sid}/slide_files/0/0_0.jpeg",
                 f"/dzi/{sid}/overlay_files/0/0_0.png"):
        assert get(served, path)[0] == 200, path
    detail = json.loads(get(served, f"/api/slides/{sid}")[1].split(b"\r\n\r\n", 1)[1])
    assert detail["topk"] and detail["overlay"]["dzi"] == f"/dzi/{sid}/overlay.dzi"


def hostile(sid: str, top: int) -> list[bytes]:
    """Requests that must all get a 4xx: traversal, unknown ids, out-of-range tiles..."""
    paths = [
        "/../../../../etc/passwd", "/static/../server.py", "/static/..%2fserver.py",
        "/static/%2e%2e/%2e%2e/catalog.py", "/static//etc/passwd", "/static/",
        "/static/vendor", f"/slide/{sid}/../../predict.json", "/slide/..%2fpredict.json",
        "/slide/nope", "/api/slides/nope", "/api/slides/..", "/api/slides/%2e%2e",
        "/api/slides/%00", "/dzi/nope/slide.dzi", f"/dzi/..%2f..%2f{sid}/slide.dzi",
        f"/dzi/{sid}/secret.dzi", f"/dzi/{sid}/slide_files/{top + 1}/0_0.jpeg",
        f"/dzi/{sid}/slide_files/999/0_0.jpeg", f"/dzi/{sid}/slide_files/{top}/9999_0.jpeg",
        f"/dzi/{sid}/slide_files/{top}/0_9999999.jpeg", f"/dzi/{sid}/slide_files/-1/0_0.jpeg",
        f"/dzi/{sid}/slide_files/0/0_0.png", f"/dzi/{sid}/overlay_files/0/0_0.jpeg",
        f"/dzi/{sid}/slide_files/x/0_0.jpeg", f"/dzi/{sid}/slide_files/0/0-0.jpeg",
        f"/dzi/{sid}/slide_files/0/00000000000000000000000000_0.jpeg",
        f"/dzi/{sid}/slide_files/0/0_0.jpeg/..", f"/dzi/{sid}/slide_files/1e3/0_0.jpeg",
        "/predictions.csv", "/slides/" + sid + ".json", "/" + "a" * 5000, "/%ff%fe",
        "/api/slides/" + "%C0%AE" * 4,
    ]
    reqs = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            for p in paths]
    reqs += [
        b"GET http://127.0.0.1/../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET ../../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"POST /api/slides HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
        b"DELETE / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",  # DNS rebinding
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.x\r\n\r\n",
        b"FROB / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ]
    return reqs


def test_hostile_requests_get_4xx_and_nothing_from_outside(served, predicted):
    secret = "never-serve-" + predicted.name
    (predicted.parent / "secret.txt").write_text(secret)
    sid = load_catalog(predicted).slides[0].slide_id
    top = served.viewer._tiles(served.viewer.catalog.get(sid))[0].dz.level_count - 1
    answers = [(req, *raw(served, req)) for req in hostile(sid, top)]
    for req, status, answer in answers:
        assert 400 <= status < 500, (req, answer[:300])
        assert b"Traceback" not in answer and b"File \"" not in answer, req
        for leak in (secret.encode(), b"root:x:0:0", b"operating_threshold", b"import "):
            assert leak not in answer, (req, leak)
    assert get(served, "/")[0] == 200  # still answering afterwards


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1])


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc for RSS")
def test_load_200_tiles_from_8_clients(predicted, shapes_data):
    """`mixsup view` as a process on a loopback port: 200 tile requests from 8 concurrent
    clients are all answered with the right bytes, and the server's memory stays bounded."""
    proc = subprocess.Popen([sys.executable, "-m", "mixsup", "view", str(predicted), "--data",
                             str(shapes_data), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if m is None and "OpenSeadragon" in proc.stderr.read():
            pytest.skip("OpenSeadragon is not installed: run `make viewer-assets` (needs npm)")
        assert m, line
        port = int(m[1])

        def fetch(path: str) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                return r.status, r.read()
            finally:
                conn.close()

        paths = []
        for entry in load_catalog(predicted).slides:
            for layer, fmt in (("slide", "jpeg"), ("overlay", "png")):
                dzi = fetch(f"/dzi/{entry.slide_id}/{layer}.dzi")[1].decode()
                w, h = (int(v) for v in re.search(r'Width="(\d+)" Height="(\d+)"', dzi).groups())
                level = max(w, h).bit_length()  # the full-resolution Deep Zoom level
                paths += [f"/dzi/{entry.slide_id}/{layer}_files/{level}/{c}_{r}.{fmt}"
                          for c in range(-(-w // 254)) for r in range(-(-h // 254))]
        expected = {p: fetch(p) for p in paths}  # one at a time: the reference answers
        assert all(s == 200 for s, _ in expected.values())
        before = _rss_kib(proc.pid)
        requests = [paths[i % len(paths)] for i in range(200)]
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(fetch, requests))
        seconds = time.perf_counter() - start
        after = _rss_kib(proc.pid)
        wrong = [p for p, a in zip(requests, answers, strict=True) if a != expected[p]]
        print(f"\nload: 200 tile requests, 8 clients, {len(paths)} distinct tiles: "
              f"{200 - len(wrong)} correct in {seconds:.1f} s; server RSS {before // 1024} MiB "
              f"before, {after // 1024} MiB after")
        assert not wrong
        assert after - before < 256 * 1024  # KiB: readers of 4 slides at most, no tile cache
    finally:
        proc.terminate()
        proc.wait(30)


def test_server_threads_survive_concurrent_slide_switching(served, predicted):
    """More slides than the open-reader LRU holds, read from several threads at once."""
    ids = [s.slide_id for s in load_catalog(predicted).slides]
    paths = [f"/dzi/{sid}/slide_files/0/0_0.jpeg" for sid in ids] * 4
    with ThreadPoolExecutor(6) as pool:
        statuses = [s for s, _ in pool.map(lambda p: get(served, p), paths)]
    assert statuses == [200] * len(paths)
    assert threading.active_count() < 50


def test_host_names_with_and_without_ports():
    from mixsup.view.server import _host_name

    assert [_host_name(h) for h in ("[::1]:8765", "[::1]", "LocalHost:80", "127.0.0.1",
                                    "evil.example:8765")] == \
        ["::1", "::1", "localhost", "127.0.0.1", "evil.example"]


def test_a_nan_probability_is_null_in_the_list_not_a_500(predicted, shapes_data, tmp_path):
    import shutil

    from mixsup.view.viewer import Viewer

    pred = tmp_path / "pred"
    shutil.copytree(predicted, pred)
    lines = (pred / "predictions.csv").read_text().splitlines()
    sid = lines[1].split(",")[0]
    lines[1] = f"{sid},nan,0"
    (pred / "predictions.csv").write_text("\n".join(lines) + "\n")
    viewer = Viewer(load_catalog(pred, shapes_data))
    try:
        body, kind, _ = viewer.route("/api/slides")
    finally:
        viewer.close()
    listed = {s["slide_id"]: s for s in json.loads(body)["slides"]}
    assert kind == "application/json" and listed[sid]["probability"] is None


def test_a_slide_file_that_is_not_there_is_named_at_start(predicted, shapes_data, tmp_path,
                                                           caplog):
    """One slide file not there: a warning naming it and --data, the slide listed as missing;
    none there at all: an error saying the same."""
    import logging
    import shutil

    from mixsup.errors import MixsupError

    pred = tmp_path / "pred"
    shutil.copytree(predicted, pred)
    records = sorted((pred / "slides").glob("*.json"))
    for i, rec in enumerate(records):
        data = json.loads(rec.read_text())
        data["path"] = f"relative/elsewhere{i}.tiff"
        rec.write_text(json.dumps(data))
        if i == 0:
            with caplog.at_level(logging.WARNING, logger="mixsup.view.catalog"):
                catalog = load_catalog(pred)
            assert [s.slide_id for s in catalog.slides if s.missing] == [rec.stem]
            assert any("elsewhere0.tiff" in r.getMessage() and "--data" in r.getMessage()
                       for r in caplog.records)
    with pytest.raises(MixsupError, match="elsewhere") as err:
        load_catalog(pred)
    assert "--data" in err.value.fix
    with_data = load_catalog(pred, shapes_data)  # slides.csv's paths win
    assert not any(s.missing for s in with_data.slides)


def test_slide_json_carries_the_datasets_annotations(served, predicted, shapes_data, tmp_path):
    from shapely.geometry import shape

    from mixsup.labels.annotations import read_annotations
    from mixsup.view.viewer import slide_annotations

    catalog = served.viewer.catalog
    entry = next(s for s in catalog.slides if s.annotation is not None and s.label == 1)
    detail = json.loads(get(served, f"/api/slides/{entry.slide_id}")[1].split(b"\r\n\r\n", 1)[1])
    truth = detail["annotations"]
    assert truth["error"] is None and truth["file"] == entry.annotation.name
    expected = read_annotations(entry.annotation).tumor
    assert len(truth["tumor"]) == 1 and truth["tumor"][0]["type"] in ("Polygon", "MultiPolygon")
    assert shape(truth["tumor"][0]).symmetric_difference(expected).area < 0.02 * expected.area
    # Without --data there is nothing to show; an unreadable file is named, not a 500.
    plain = load_catalog(predicted)
    assert all(s.annotation is None for s in plain.slides)
    copy = tmp_path / "data"
    shutil.copytree(shapes_data, copy, ignore=shutil.ignore_patterns("tiles"))
    odd_class = {"type": "Feature", "properties": {"name": "Odd"},
                 "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [9, 0], [9, 9],
                                                                  [0, 0]]]}}
    (copy / "annotations" / entry.annotation.name).write_text(
        json.dumps({"type": "FeatureCollection", "features": [odd_class]}))
    odd = next(s for s in load_catalog(predicted, copy).slides if s.slide_id == entry.slide_id)
    got = slide_annotations(odd, (10_000, 10_000))
    assert got is not None and "unknown annotation class 'Odd'" in got["error"]
    # NaN coordinates (Python's json reads them) are the file's error, not a 500
    odd_class["properties"] = {"name": "Tumor"}
    odd_class["geometry"]["coordinates"][0][1] = [float("nan"), 0]
    (copy / "annotations" / entry.annotation.name).write_text(
        json.dumps({"type": "FeatureCollection", "features": [odd_class]}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # shapely's, building the NaN ring
        got = slide_annotations(odd, (10_000, 10_000))
    assert got is not None and "NaN or infinite coordinate" in got["error"]
