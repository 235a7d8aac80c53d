"""A real headless browser against `mixsup view`: the list, a slide page's tiles, overlay and
boxes, and a screenshot. Skips, saying how to install it, where chromium is missing."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from html.parser import HTMLParser

from mixsup.view.catalog import load_catalog
from tests.view.conftest import chromium


def browse(exe: str, url: str, *extra: str) -> str:
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--window-size=1280,800", "--virtual-time-budget=15000", *extra, url],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


class BodyData(HTMLParser):
    """The body's data-* attributes and the table rows' data-id values."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.rows: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = {k[5:]: v for k, v in a.items() if k.startswith("data-")}
        elif tag == "tr" and "data-id" in a:
            self.rows.append(a["data-id"])


def slide_detail(served, slide_id: str) -> dict:
    with urllib.request.urlopen(f"{served.url}api/slides/{slide_id}", timeout=60) as r:
        return json.loads(r.read())


def parsed(dom: str) -> BodyData:
    p = BodyData()
    p.feed(dom)
    return p


def test_browser_shows_list_slide_overlay_boxes(served, predicted, tmp_path):
    exe = chromium()
    catalog = load_catalog(predicted)
    listing = parsed(browse(exe, served.url, "--dump-dom"))
    assert sorted(listing.rows) == sorted(s.slide_id for s in catalog.slides)
    annotated = [s for s in served.viewer.catalog.slides if s.annotation is not None]
    entry = max(annotated, key=lambda s: len(s.topk))  # served with --data: labels shown
    url = f"{served.url}slide/{entry.slide_id}"
    before = served.viewer.tiles_served
    dom = browse(exe, url, "--dump-dom")
    assert "could not open" not in dom
    page = parsed(dom)
    assert int(page.body.get("tiles", 0)) > 0, page.body
    assert page.body.get("overlay") == "loaded", page.body
    assert int(page.body["boxes"]) == len(entry.topk) > 0
    assert "regions" in page.body
    truth = slide_detail(served, entry.slide_id)["annotations"]
    assert truth["error"] is None
    assert page.body.get("truth") == str(len(truth["tumor"]) + len(truth["roi"]))
    bare = [s for s in served.viewer.catalog.slides if s.annotation is None]
    if bare:  # a slide without pixel labels: no annotation layer, no count
        assert "truth" not in parsed(browse(exe, f"{served.url}slide/{bare[0].slide_id}",
                                            "--dump-dom")).body
    assert served.viewer.tiles_served > before
    shot = tmp_path / "viewer.png"
    browse(exe, url, f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
