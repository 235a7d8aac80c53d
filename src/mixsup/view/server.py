"""``mixsup view``'s web server: the standard library's HTTP server, a fixed pool of worker
threads and a few routes.

Safety: every file it serves is in a table made at start-up (the viewer's static files, and per
slide id the slide, probability map and regions that the prediction folder records). A request
only picks a key of that table; anything else is a 4xx answer, and failures are logged here and
answered with a one-line 500, never a traceback. Every answer is HTTP/1.x with a status line,
errors carry a JSON body, and JSON never holds NaN or Infinity, which browsers cannot parse.
"""

from __future__ import annotations

import logging
import queue
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from ipaddress import ip_address
from typing import Any
from urllib.parse import unquote, urlsplit

from mixsup.errors import MixsupError
from mixsup.storage.user_files import CONTROL_CHARS
from mixsup.view.catalog import Catalog
from mixsup.view.viewer import HTTPError, Viewer, json_bytes

log = logging.getLogger(__name__)
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
WORKERS = 16  # requests answered at once (tile decoding is bounded apart, by the CPU count)
PENDING = 256  # accepted connections waiting for a worker; one more is answered 503
BACKLOG = 512  # connections the kernel completes before the server accepts them
REFUSE_WAIT = 0.2  # seconds spent reading a refused request, so that closing does not reset
CLOSE_WAIT = 5.0  # seconds the shutdown waits for requests being answered


class Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    raw_requestline: bytes
    server_version = "mixsup-view"
    # Answers before the request's version is known get a status line too (http.server's
    # default, HTTP/0.9, answers them with a bare body, which clients read as no answer).
    default_request_version = "HTTP/1.0"
    timeout = 30  # seconds: a client that sends nothing gives its worker back

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method without a do_* handler with 501; this is read-only
        if name.startswith("do_"):
            return lambda: self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "read-only server")
        raise AttributeError(name)

    def parse_request(self) -> bool:
        """http.server's parsing, stricter: no control character in the request line (it
        takes a CR for a space) and no HTTP/0.9 request (it would answer without a status
        line). An empty line before the request line is skipped, as RFC 9112 asks."""
        if self.raw_requestline in (b"\r\n", b"\n"):
            self.raw_requestline = self.rfile.readline(65537)
        line = self.raw_requestline.decode("latin-1").removesuffix("\n").removesuffix("\r")
        self.requestline, self.command = line, ""
        self.request_version = self.default_request_version
        if not line or CONTROL_CHARS.search(line):
            self.send_error(HTTPStatus.BAD_REQUEST, "malformed request line")
            return False
        if len(line.split()) == 2:
            self.send_error(HTTPStatus.BAD_REQUEST, "an HTTP/0.9 request; this server speaks "
                            "HTTP/1.0 and HTTP/1.1")
            return False
        if not super().parse_request():  # 400 for a malformed version, 505 from HTTP/2
            return False
        if self.request_version.startswith("HTTP/0."):
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                            f"{self.request_version} is not supported; use HTTP/1.1")
            return False
        return True

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """Errors in JSON ({"error": why}), under the status's standard reason phrase."""
        status = HTTPStatus(code)
        if not self.request_version.startswith("HTTP/1."):
            self.request_version = "HTTP/1.0"  # else no status line: see default_request_version
        self.log_error("%d %s", code, message)
        body = json_bytes({"error": message or status.phrase})
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer(self, send_body: bool) -> None:
        try:
            self._check_host()
            body, ctype, cacheable = self.server.viewer.route(_request_path(self.path))
        except HTTPError as exc:
            self.send_error(exc.status, str(exc))
            return
        except Exception:  # a bug or an unreadable file: logged here, one line to the client
            log.exception("error answering %s", self.path)
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the log")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "private, max-age=3600" if cacheable else "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _check_host(self) -> None:
        """On loopback, refuse other Host names: a web page elsewhere cannot rebind a name of
        its own to 127.0.0.1 and read the slides through the visitor's browser."""
        if not self.server.loopback:
            return
        host = _host_name(self.headers.get("Host") or "")
        if not _is_loopback(host):
            raise HTTPError(HTTPStatus.FORBIDDEN, "this viewer answers on localhost only")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _request_path(target: str) -> str:
    """The path of a request target; a malformed one, or one whose decoded path holds a
    control character (a CR, a NUL), is a 400."""
    try:
        path = urlsplit(target).path
    except ValueError as exc:  # "http://[" and other unparsable authorities
        raise HTTPError(HTTPStatus.BAD_REQUEST, "malformed request target") from exc
    if not path.startswith("/") or CONTROL_CHARS.search(unquote(path)):
        raise HTTPError(HTTPStatus.BAD_REQUEST, "malformed request target")
    return path


def _host_name(header: str) -> str:
    """The name of a Host header without its port: ``[::1]:8765`` and ``[::1]`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0]


def _busy_answer() -> bytes:
    body = json_bytes({"error": "the viewer is busy; try again in a moment"})
    return (b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n"
            b"X-Content-Type-Options: nosniff\r\n\r\n" % len(body)) + body


class ViewerServer(HTTPServer):
    """The HTTP server with ``workers`` threads: a burst of connections waits in a queue of
    ``pending`` (and the kernel's backlog) and, past it, is answered 503 with Retry-After
    rather than reset or given a thread each."""

    request_queue_size = BACKLOG

    def __init__(self, viewer: Viewer, host: str, port: int, workers: int = WORKERS,
                 pending: int = PENDING) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        # Set first: a failed bind calls server_close, which closes the viewer.
        self.viewer = viewer
        self.loopback = _is_loopback(host)
        self.pending = pending
        self._queue: queue.Queue[tuple[socket.socket, Any] | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        super().__init__((host, port), Handler)
        self._workers = [threading.Thread(target=self._work, name=f"mixsup-view-{i}",
                                          daemon=True) for i in range(workers)]
        for worker in self._workers:
            worker.start()

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"

    def process_request(self, request: Any, client_address: Any) -> None:
        # Only serve_forever's thread puts: the size it reads cannot grow behind its back.
        if self._queue.qsize() >= self.pending:
            self._refuse(request)
        else:
            self._queue.put((request, client_address))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            request, address = item
            try:
                self.finish_request(request, address)
            except Exception:
                self.handle_error(request, address)
            finally:
                self.shutdown_request(request)

    def _refuse(self, request: socket.socket) -> None:
        """503 at once. The request is read first, for REFUSE_WAIT at most: a socket closed
        with unread input resets the connection, and the client would lose the answer."""
        deadline = time.monotonic() + REFUSE_WAIT
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                request.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = request.recv(65536)
                if not chunk:
                    break
                head += chunk
        except OSError:  # TimeoutError included: answered all the same
            pass
        try:
            request.settimeout(REFUSE_WAIT)
            request.sendall(_busy_answer())
        except OSError:
            pass
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):  # the client went away
            log.debug("%s: %s", client_address, exc)
        else:
            log.exception("error serving %s", client_address)

    def server_close(self) -> None:
        super().server_close()
        while True:  # connections still waiting are closed unanswered
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.shutdown_request(item[0])
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + CLOSE_WAIT
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        busy = [w.name for w in self._workers if w.is_alive()]
        if busy:  # an OpenSlide handle closed under a reading thread can crash the process
            log.warning("%d request(s) still running at shutdown; slides left open",
                        len(busy))
            return
        self.viewer.close()


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse an empty --host (every interface) and, without ``allow_remote``, any address
    but loopback; a remote one allowed is logged."""
    if not host.strip():
        raise MixsupError("--host is empty, which would listen on every network interface",
                          "leave --host out to listen on 127.0.0.1 (this machine only), or "
                          "name one address of this machine with --allow-remote")
    if _is_loopback(host):
        return
    if not allow_remote:
        raise MixsupError(f"--host {host} is not a loopback address: anyone who can reach "
                          "this machine there could see these slides",
                          "add --allow-remote to listen there anyway, or leave --host out "
                          "(127.0.0.1: this machine only)")
    log.warning("listening on %s: anyone who can reach this machine can see these slides",
                host)


def make_server(catalog: Catalog, host: str = "127.0.0.1", port: int = 8765,
                workers: int = WORKERS, pending: int = PENDING) -> ViewerServer:
    try:
        return ViewerServer(Viewer(catalog), host, port, workers, pending)
    except (OSError, OverflowError, UnicodeError) as exc:  # gaierror is an OSError
        why = getattr(exc, "strerror", None) or str(exc)
        raise MixsupError(f"cannot listen on {host}:{port} ({why})",
                          "pass an address of this machine as --host (default 127.0.0.1) and "
                          "a free --port (0 for any)") from exc
