"""The search page in a real browser (Debian's chromium, driven by Playwright): index the shipped
sample, search, see the right card first, play it from the matched moment, upload an image, and
see the error text of a bad query."""

from __future__ import annotations

import io
import json
import shutil
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from egorag.engine import Engine
from egorag.server import EgoragServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SAMPLE = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "sample.mp4"

pytestmark = pytest.mark.slow  # the real shipped models index the sample


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make .venv/.test` installs it (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("page") / "db"
    Engine(db).index([SAMPLE])
    return db


def serve(engine):
    server = EgoragServer(engine, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def api(server, path):
    with urllib.request.urlopen(server.url + path, timeout=60) as r:
        return json.loads(r.read())


def current_time(page) -> float:
    return page.evaluate("document.getElementById('player').currentTime")


def test_search_watch_and_errors(browser, sample_db, tmp_path):
    server = serve(Engine(sample_db))
    page = browser.new_page()
    try:
        page.goto(server.url)
        page.wait_for_selector("#status:has-text('1 video indexed')")
        query = "how does lava burst out of a mountain"
        top = api(server, "/search?" + urllib.parse.urlencode({"q": query, "k": 5}))["hits"][0]
        page.fill("#q", query)
        page.click("#go")
        first = page.locator(".card").first
        first.wait_for()
        assert first.get_attribute("data-scene-id") == top["scene_id"]
        assert "sample.mp4" in first.locator(".title").inner_text()
        assert first.locator("mark").count() >= 1  # the query's words are highlighted, whole words only
        assert page.evaluate("""[...document.querySelectorAll('.card mark')].every(m => {
            const before = m.previousSibling ? m.previousSibling.textContent : '';
            return !/[\\p{L}\\p{N}]$/u.test(before); })""")
        assert first.locator(".bars .bar").count() == len(top["scores"])
        assert page.locator(".strip .mark").count() == page.locator(".card").count()
        # the thumbnail loads (asynchronously: wait for it)
        page.wait_for_function("() => { const i = document.querySelector('.card img'); return i.complete && i.naturalWidth > 0; }",
                               timeout=20000)

        first.click()  # plays from the moment the query matched
        want = top["moment"] if top["moment"] is not None else top["start"]
        page.wait_for_function(f"Math.abs(document.getElementById('player').currentTime - {want}) < 0.5", timeout=20000)
        assert page.evaluate("document.getElementById('player').readyState") >= 1
        assert page.evaluate("document.getElementById('player').error") is None  # the browser decodes it
        first.locator(".when").click()  # the time range plays from the hit's start
        page.wait_for_function(f"Math.abs(document.getElementById('player').currentTime - {top['start']}) < 0.5", timeout=20000)
        assert abs(current_time(page) - top["start"]) < 0.5

        # a bad query shows the server's error text
        page.click("#filters summary")
        page.fill("#from", "ten")
        page.click("#go")
        page.wait_for_selector("#error:not([hidden])")
        assert "'from': not a time" in page.inner_text("#error")
        page.fill("#from", "")

        # an image query: this store has no visual modality, and the page says so
        from PIL import Image

        image = tmp_path / "query.png"
        Image.new("RGB", (64, 48), (200, 80, 20)).save(image)
        page.set_input_files("#image", str(image))
        page.wait_for_function("document.getElementById('error').textContent.includes('visual modality')")
    finally:
        page.close()
        server.shutdown()
        server.server_close()


def test_image_query_from_the_page(browser, tmp_path, cut_video, tiny_clip, tiny_clip_checkpoint):
    import av
    from conftest import HashEncoder, ScriptedTranscriber

    from egorag.config import EngineConfig, TextConfig, VisualConfig
    from egorag.models import ModelSet

    db = tmp_path / "vdb"
    cfg = EngineConfig(modalities=("text", "visual"), text=TextConfig(encoder="test-hash"),
                       visual=VisualConfig(model="egorag-tiny-clip", pretrained=str(tiny_clip_checkpoint), device="cpu"))
    ms = ModelSet(transcriber=ScriptedTranscriber([]), text=HashEncoder(), visual=tiny_clip)
    Engine(db, cfg, models=ms).index([cut_video])
    buf = io.BytesIO()
    with av.open(str(cut_video)) as c:
        frame = next(f for f in c.decode(video=0) if f.time >= 4.5)
    frame.to_image().save(buf, format="PNG")
    image = tmp_path / "frame.png"
    image.write_bytes(buf.getvalue())
    server = serve(Engine(db, cfg, models=ms))
    page = browser.new_page()
    try:
        page.goto(server.url)
        page.wait_for_selector("#status:has-text('1 video indexed')")
        page.set_input_files("#image", str(image))
        page.wait_for_selector(".card")
        assert page.locator(".card").first.get_attribute("data-scene-id").endswith(":00003")  # the frame's scene
        assert page.is_hidden("#error")
    finally:
        page.close()
        server.shutdown()
        server.server_close()
