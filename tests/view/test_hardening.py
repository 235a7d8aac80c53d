"""The viewer under damaged files, bursts of requests, garbage request lines, exposed hosts and
slide files that went away: clear answers (4xx, 503, a warning), never a 500 or a reset."""

from __future__ import annotations

import http.client
import json
import logging
import re
import shutil
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mixsup.cli import main
from mixsup.errors import MixsupError
from mixsup.view import assets
from mixsup.view.catalog import load_catalog
from mixsup.view.server import ViewerServer, check_host
from tests.view.conftest import serving


def raw(server: ViewerServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Bytes sent as they are; (status, headers, body) of the answer, status 0 if none came."""
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(request)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except TimeoutError:
            return 0, {}, data
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    if m is None:
        return 0, {}, data
    headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
    return int(m[1]), headers, body


def get(server: ViewerServer, path: str) -> tuple[int, dict[str, str], bytes]:
    return raw(server, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                       .encode())


def strict_json(body: bytes):
    """JSON as a browser reads it: NaN, Infinity and -Infinity are errors."""
    def refuse(name: str):
        raise ValueError(f"{name} is not JSON")
    return json.loads(body, parse_constant=refuse)


@pytest.fixture
def pred_copy(predicted, tmp_path) -> Path:
    pred = tmp_path / "pred"
    shutil.copytree(predicted, pred, ignore=shutil.ignore_patterns("tiles", "heatmaps"))
    return pred


@pytest.fixture
def data_copy(shapes_data, tmp_path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(shapes_data, data, ignore=shutil.ignore_patterns("tiles"))
    return data


# -- 1. numbers JSON does not have, in a region file --------------------------------------------
def suspicious(coordinate: str) -> str:
    ring = f"[[0, 0], [{coordinate}, 0], [100, 100], [0, 0]]"
    return ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
            '{"name": "Suspicious 1"}, "geometry": {"type": "Polygon", "coordinates": [' + ring
            + "]}}]}")


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999", "1" + "0" * 400])
def test_a_region_file_with_a_non_finite_number_is_left_out(pred_copy, shapes_data, number,
                                                            caplog):
    catalog = load_catalog(pred_copy, shapes_data)
    sid = catalog.slides[0].slide_id
    (pred_copy / "regions" / f"{sid}.geojson").write_text(suspicious(number))
    with serving(catalog) as server, caplog.at_level(logging.WARNING):
        status, _, body = get(server, f"/api/slides/{sid}")
        other = catalog.slides[1].slide_id
        other_status, _, other_body = get(server, f"/api/slides/{other}")
    assert status == 200, body[:300]
    detail = strict_json(body)
    assert detail["regions"] == [] and detail["slide_id"] == sid
    assert any(f"{sid}.geojson" in r.getMessage() and "not finite" in r.getMessage()
               for r in caplog.records)
    assert other_status == 200 and strict_json(other_body)["regions"]  # the others: shown


def test_json_answers_never_hold_nan_or_infinity():
    from mixsup.view.viewer import json_bytes

    got = json_bytes({"a": float("inf"), "b": [float("nan"), -float("inf"), 1.5], "c": (2,)})
    assert strict_json(got) == {"a": None, "b": [None, None, 1.5], "c": [2]}


# -- 2. a burst of tile requests ----------------------------------------------------------------
def small_tiles(server: ViewerServer) -> list[str]:
    """A tile of each of the first levels (a few pixels each) of every slide and map."""
    return [f"/dzi/{s.slide_id}/{layer}_files/{level}/0_0.{fmt}"
            for s in server.viewer.catalog.slides
            for layer, fmt in (("slide", "jpeg"), ("overlay", "png")) for level in range(8)]


def burst(server: ViewerServer, n: int, clients: int) -> list[tuple[object, str | None]]:
    """``n`` tile requests from ``clients`` threads at once: (status or error, Retry-After)."""
    port = server.server_address[1]
    paths = small_tiles(server)

    def fetch(path: str) -> tuple[object, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
            answer.read()
            return answer.status, answer.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as exc:  # a reset, a refusal, a timeout
            return type(exc).__name__, None
        finally:
            conn.close()

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(fetch, [paths[i % len(paths)] for i in range(n)]))


def check_burst(answers: list[tuple[object, str | None]]) -> Counter:
    counts = Counter(status for status, _ in answers)
    assert set(counts) <= {200, 503}, counts  # no reset, no 500
    assert all(retry == "1" for status, retry in answers if status == 503)
    return counts


@pytest.mark.timeout(120)
def test_a_burst_of_300_tile_requests_is_answered(predicted, shapes_data):
    """More parallel connections than workers and a slide reader cache smaller than the slides:
    each is answered, 200 or 503 with Retry-After, none reset and none failed."""
    with serving(load_catalog(predicted, shapes_data)) as server:
        start = time.perf_counter()
        counts = check_burst(burst(server, 300, 100))
        seconds = time.perf_counter() - start
        assert get(server, "/api/slides")[0] == 200  # still answering afterwards
    print(f"\nburst: 300 tile requests, 100 clients: {dict(counts)} in {seconds:.1f} s")
    assert counts[200] >= 200  # the default queue takes a burst of this size


@pytest.mark.timeout(120)
def test_a_burst_past_a_small_queue_is_answered_503_not_reset(predicted, shapes_data):
    with serving(load_catalog(predicted, shapes_data), workers=2, pending=4) as server:
        counts = check_burst(burst(server, 300, 48))
    print(f"\nburst past a queue of 4: {dict(counts)}")
    assert counts[200] and counts[503], counts


@pytest.mark.timeout(60)
def test_a_full_queue_answers_503_with_retry_after(predicted, shapes_data):
    """One worker held by a client that sends nothing, one request waiting: the next is
    answered at once, 503 with Retry-After and a JSON body; the waiting one is served."""
    with serving(load_catalog(predicted, shapes_data), workers=1, pending=1) as server:
        queue = server._queue

        def settles(accepted: int, waiting: int) -> None:
            """Until the server accepted ``accepted`` connections (the queue counts each put
            as a task) and ``waiting`` of them wait for a worker."""
            deadline = time.monotonic() + 10
            while (queue.unfinished_tasks, queue.qsize()) != (accepted, waiting):
                assert time.monotonic() < deadline, "the server did not take the connection"
                time.sleep(0.01)

        address = server.server_address[:2]
        tile = small_tiles(server)[0]
        request = f"GET {tile} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        with socket.create_connection(address, timeout=30):
            settles(1, 0)  # the worker holds it, waiting for its request line
            waiting = socket.create_connection(address, timeout=30)
            waiting.sendall(request)
            settles(2, 1)
            status, headers, body = raw(server, request)
            assert status == 503 and headers["Retry-After"] == "1"
            assert "busy" in strict_json(body)["error"]
        with waiting:  # the holder gave its worker back
            answer = b""
            while chunk := waiting.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.0 200 ")


def test_the_server_bounds_its_threads_and_listens_with_a_long_backlog():
    from mixsup.view.server import BACKLOG, PENDING, WORKERS

    assert ViewerServer.request_queue_size == BACKLOG >= 128
    assert WORKERS <= 64 and PENDING >= WORKERS


# -- 3. request lines HTTP/1.x does not allow ---------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("request_line,expected", [
    (b"GET /\r\n", {400}),  # HTTP/0.9
    (b"GET / HTTP/2.0\r\n\r\n", {505}),
    (b"GET / HTTP/3.0\r\nHost: 127.0.0.1\r\n\r\n", {505}),
    (b"GET / HTTP/0.9\r\nHost: 127.0.0.1\r\n\r\n", {505}),
    (b"GET / HTTP/1.1.1\r\n\r\n", {400}),
    (b"GET / FOO/1.1\r\n\r\n", {400}),
    (b"GET / HTTP/1.x\r\n\r\n", {400}),
    (b"GARBAGE\r\n\r\n", {400}),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", {400}),  # TLS to a plain port
    (b"GET /a b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", {400}),
    (b"GET /api/slides\r HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", {400}),  # a CR in the path
    (b"GET /\r HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", {400}),
    (b"GET /api/sl\rides HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", {400}),
    (b"GET /a%0Db HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", {400, 404}),
    (b"GET /static/slide.js%0D HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", {400, 404}),
    (b"GET /api/slides%0D%0AX:%20y HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", {400, 404}),
    (b"GET /\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", {400}),
    (b"GET http://[/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", {400}),
])
def test_malformed_request_lines_get_a_status_line(served, request_line, expected):
    status, headers, body = raw(served, request_line)
    assert status in expected, (request_line, status, body[:200])
    assert headers["Content-Type"] == "application/json" and strict_json(body)["error"]
    assert get(served, "/")[0] == 200  # still answering


def test_an_empty_line_before_the_request_is_skipped(served):
    assert raw(served, b"\r\nGET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 200


def test_head_of_an_error_has_no_body(served):
    status, headers, body = raw(served, b"HEAD /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 404 and int(headers["Content-Length"]) > 0 and body == b""


# -- 4. the address to listen on ----------------------------------------------------------------
@pytest.fixture
def no_osd_check(monkeypatch):
    monkeypatch.setattr(assets, "osd_files", lambda require=True: {})


@pytest.mark.parametrize("host", ["", " "])
def test_view_refuses_an_empty_host(tmp_path, host, no_osd_check, capsys):
    assert main(["view", str(tmp_path), "--host", host, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--host" in err and "every network interface" in err and err.count("\n") == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.org"])
def test_view_refuses_a_remote_host_without_allow_remote(tmp_path, host, no_osd_check, capsys):
    assert main(["view", str(tmp_path), "--host", host, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"--host {host} is not a loopback address" in err and "--allow-remote" in err


def test_allow_remote_lets_a_remote_host_through_with_a_warning(tmp_path, no_osd_check, capsys,
                                                                caplog):
    with caplog.at_level(logging.WARNING, logger="mixsup.view.server"):
        # past the host check: the folder is the next thing refused
        assert main(["view", str(tmp_path), "--host", "0.0.0.0", "--allow-remote"]) == 2
    assert "predict.json" in capsys.readouterr().err
    assert any("listening on 0.0.0.0" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "LocalHost", "127.0.0.2"])
def test_loopback_hosts_need_no_flag(host, caplog):
    with caplog.at_level(logging.WARNING):
        check_host(host, allow_remote=False)
    assert not caplog.records


def test_an_empty_host_is_refused_even_with_allow_remote():
    with pytest.raises(MixsupError, match="--host is empty"):
        check_host("", allow_remote=True)


# -- 5. slide files that went away --------------------------------------------------------------
def assert_missing_answers(server: ViewerServer, sid: str) -> None:
    listed = {s["slide_id"]: s for s in strict_json(get(server, "/api/slides")[2])["slides"]}
    assert listed[sid]["missing"] is True
    assert all(not s["missing"] for i, s in listed.items() if i != sid)
    for path in (f"/api/slides/{sid}", f"/dzi/{sid}/slide.dzi",
                 f"/dzi/{sid}/slide_files/0/0_0.jpeg", f"/dzi/{sid}/overlay_files/0/0_0.png"):
        status, headers, body = get(server, path)
        assert status == 404 and headers["Content-Type"] == "application/json", path
        assert "is missing" in strict_json(body)["error"], path
    assert get(server, f"/slide/{sid}")[0] == 200  # the page opens, and says why (slide.js)
    other = next(i for i in listed if i != sid)
    assert get(server, f"/dzi/{other}/slide_files/0/0_0.jpeg")[0] == 200
    assert get(server, f"/api/slides/{other}")[0] == 200


def test_with_data_a_slide_file_gone_is_listed_missing(predicted, data_copy, caplog):
    gone = data_copy / "slides" / "slide_002.tiff"
    gone.unlink()
    with caplog.at_level(logging.WARNING, logger="mixsup.view.catalog"):
        catalog = load_catalog(predicted, data_copy)
    warned = [r.getMessage() for r in caplog.records if "not there" in r.getMessage()]
    assert len(warned) == 1 and "slide_002" in warned[0] and str(gone) in warned[0]
    assert [s.slide_id for s in catalog.slides if s.missing] == ["slide_002"]
    entry = catalog.get("slide_002")
    assert entry is not None and entry.label is not None  # still labelled from slides.csv
    assert catalog.metrics is not None
    with serving(catalog) as server:
        assert_missing_answers(server, "slide_002")


def test_a_slide_file_gone_after_start_up_is_a_404_not_a_500(predicted, data_copy):
    catalog = load_catalog(predicted, data_copy)
    assert not any(s.missing for s in catalog.slides)
    with serving(catalog) as server:
        (data_copy / "slides" / "slide_004.tiff").unlink()
        status, _, body = get(server, "/dzi/slide_004/slide_files/0/0_0.jpeg")
        assert status == 404 and "is missing" in strict_json(body)["error"]
        assert_missing_answers(server, "slide_004")


def test_other_dataset_problems_still_stop_the_viewer(predicted, data_copy):
    table = data_copy / "slides.csv"
    table.write_text(table.read_text().replace(",1,train,", ",7,train,", 1))
    with pytest.raises(MixsupError, match="label '7'"):
        load_catalog(predicted, data_copy)


def test_view_command_starts_with_a_missing_slide(predicted, data_copy, monkeypatch, capsys,
                                                  caplog):
    """`mixsup view --data` starts, says how many slides are missing, and serves (stopped
    here by a KeyboardInterrupt from its serve_forever)."""
    (data_copy / "slides" / "slide_001.tiff").unlink()
    monkeypatch.setattr(assets, "osd_files", lambda require=True: {})

    def interrupted(self, poll_interval: float = 0.5) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ViewerServer, "serve_forever", interrupted)
    with caplog.at_level(logging.WARNING):
        assert main(["view", str(predicted), "--data", str(data_copy), "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert "6 slides" in out and "(1 missing)" in out
    assert any("slide_001" in r.getMessage() for r in caplog.records)


class _Closing:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.mark.timeout(60)
def test_shutdown_closes_the_slides_only_after_the_workers_stopped(monkeypatch, caplog):
    import threading

    from mixsup.view import server as srv

    release, started = threading.Event(), threading.Event()

    def slow(request, address):
        started.set()
        release.wait(30)

    viewer = _Closing()
    monkeypatch.setattr(srv, "CLOSE_WAIT", 0.3)
    server = srv.ViewerServer(viewer, "127.0.0.1", 0, workers=2)  # type: ignore[arg-type]
    monkeypatch.setattr(server, "finish_request", slow)
    a, b = socket.socketpair()
    server.process_request(a, ("127.0.0.1", 1))
    assert started.wait(10)
    with caplog.at_level(logging.WARNING, logger=srv.log.name):
        server.server_close()  # a request is still being answered
    assert not viewer.closed and "still running" in caplog.text
    release.set()
    b.close()

    quiet = _Closing()
    server = srv.ViewerServer(quiet, "127.0.0.1", 0, workers=2)  # type: ignore[arg-type]
    server.server_close()
    assert quiet.closed and not any(w.is_alive() for w in server._workers)
