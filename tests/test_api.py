"""The HTTP API's routes beyond search: OpenAPI, thumbnails and scene records, the video file
with Range requests, the API key, index jobs confined to the media root, deletes, image uploads
and classification. Through FastAPI's test client and through a real server process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_cli import visual_built  # noqa: F401 - a fixture
from writer_proc import engine

from egorag.server import EgoragServer, EngineWorker
from egorag.server.app import create_app
from egorag.server.guard import Guard
from egorag.server.jobs import IndexJobs, PathRefused, confine

KEY = "s3cret-key"
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def store(library, tmp_path):
    db = tmp_path / "db"
    engine(str(db)).index([library / "v4.mp4", library / "v6.mp4"])
    return db


def client_for(db, api_key=None, media_root=None, served_engine=None):
    served_engine = served_engine or engine(str(db))
    worker = EngineWorker(served_engine)
    jobs = IndexJobs(served_engine, media_root)
    app = Guard(create_app(served_engine, worker, jobs, lambda: None), api_key)
    return TestClient(app), worker, jobs


@pytest.fixture
def client(store):
    client, worker, jobs = client_for(store)
    with client:
        yield client
    jobs.close()
    worker.close()


def wait_job(client, job_id, headers=None, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}", headers=headers or {}).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_openapi_describes_every_route(client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "egorag"
    for path in ("/search", "/search/image", "/ask", "/classify", "/videos", "/videos/{video_id}", "/videos/{video_id}/media",
                 "/scenes/{scene_id}", "/scenes/{scene_id}/thumbnail", "/jobs/{job_id}", "/health"):
        assert path in spec["paths"], path
    assert "requestBody" in spec["paths"]["/search"]["post"] and "k" in spec["components"]["schemas"]["SearchBody"]["properties"]


def test_thumbnails_scenes_and_the_video_file(client, library):
    hit = client.get("/search", params={"q": "honey bees hive", "k": 1}).json()["hits"][0]
    thumb = client.get(f"/scenes/{hit['scene_id']}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (160, 120)  # the test video's size (under 320 px)
    scene = client.get(f"/scenes/{hit['scene_id']}").json()
    assert scene["transcript"].startswith("honey bees") and scene["start"] == hit["start"]
    assert [m["text"] for m in scene["moments"]][:2] == ["honey", "bees"]

    data = (library / "v4.mp4").read_bytes()
    whole = client.get(f"/videos/{hit['video_id']}/media")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    part = client.get(f"/videos/{hit['video_id']}/media", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get(f"/videos/{hit['video_id']}/media", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    assert client.get(f"/videos/{hit['video_id']}/media", headers={"Range": f"bytes={len(data) + 10}-"}).status_code == 416

    for path in ("/scenes/nope:00001/thumbnail", "/scenes/nope:00001"):
        got = client.get(path)
        assert got.status_code == 404 and "no such scene" in got.json()["error"]
    got = client.get("/videos/0123456789abcdef/media")
    assert got.status_code == 404 and "no such video" in got.json()["error"]
    for sneaky in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"):  # ids only: a path is just an unknown id
        got = client.get(f"/videos/{sneaky}/media")
        assert got.status_code in (400, 404) and got.headers["content-type"] == "application/json" and "root:" not in got.text


def test_a_moved_video_file_is_said(store, library, tmp_path):
    import shutil

    moved = tmp_path / "v5.mp4"
    shutil.copy(library / "v5.mp4", moved)
    engine(str(store)).index([moved])
    client, worker, jobs = client_for(store)
    with client:
        video = next(v for v in client.get("/videos").json() if v["path"] == str(moved))
        moved.unlink()
        got = client.get(f"/videos/{video['video_id']}/media")
        assert got.status_code == 404 and "no longer there" in got.json()["error"]
    worker.close()


def test_the_api_key(store):
    client, worker, jobs = client_for(store, api_key=KEY)
    with client:
        assert client.get("/health").status_code == 200  # the one open route
        for path in ("/videos", "/search?q=bees", "/openapi.json", "/static/app.js"):
            got = client.get(path)
            assert got.status_code == 401 and "API key" in got.json()["error"], path
        assert client.get("/videos", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get("/videos", headers={"X-API-Key": KEY}).status_code == 200
        assert client.get("/videos", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        page = client.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 401 and 'name="api_key"' in page.text  # the sign-in form
        assert client.post("/login", data={"api_key": "wrong"}, follow_redirects=False).status_code == 401
        signed = client.post("/login", data={"api_key": KEY}, follow_redirects=False)
        assert signed.status_code == 303 and "httponly" in signed.headers["set-cookie"].lower()
        # the cookie now rides along, as it does for the page's <video> and <img> elements
        assert client.get("/videos").status_code == 200 and "egorag" in client.get("/").text
    worker.close()


def test_listening_beyond_loopback_needs_a_key(store):
    from egorag.errors import EgoragError

    with pytest.raises(EgoragError, match="api-key"):
        EgoragServer(engine(str(store)), host="0.0.0.0", port=0)


def test_paths_are_confined_to_the_media_root(tmp_path, library):
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "v3.mp4").write_bytes((library / "v3.mp4").read_bytes())
    (root / "out").symlink_to(library)  # a link that leads out
    assert confine(root, "sub/v3.mp4") == (root / "sub" / "v3.mp4").resolve()
    assert confine(root, str(root / "sub")) == (root / "sub").resolve()
    for bad, why in [("../outside.mp4", "no such file"), (str(library / "v3.mp4"), "outside the media root"),
                     ("sub/../../" + library.name, "no such file"), ("out/v3.mp4", "outside the media root"),
                     ("", "non-empty"), ("nope.mp4", "no such file")]:
        with pytest.raises(PathRefused, match=why):
            confine(root, bad)
    (tmp_path / "sibling").mkdir()
    with pytest.raises(PathRefused, match="outside"):
        confine(root, str(tmp_path / "media" / ".." / "sibling"))


def test_index_jobs_and_deletes(store, library, tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    (root / "v3.mp4").write_bytes((library / "v3.mp4").read_bytes())
    (root / "leak").symlink_to(library / "v5.mp4")  # found by walking the folder, but leads out
    client, worker, jobs = client_for(store, media_root=root)
    with client:
        assert len(client.get("/videos").json()) == 2
        for body, status, message in [({"paths": ["../db"]}, 400, "outside"), ({"paths": [str(library)]}, 400, "outside"),
                                      ({"paths": []}, 400, "'paths' must be"), ({"path": "v3.mp4"}, 400, "'paths' is required")]:
            got = client.post("/videos", json=body)
            assert got.status_code == status and message in got.json()["error"], got.json()
        started = client.post("/videos", json={"paths": ["."]})
        assert started.status_code == 202 and started.json()["state"] in ("queued", "running", "done")
        # searches keep answering while the job runs
        assert client.get("/search", params={"q": "bread dough"}).status_code == 200
        job = wait_job(client, started.json()["id"])
        assert job["state"] == "done" and job["report"]["indexed"] == [str((root / "v3.mp4").resolve())], job
        assert job["done"] == job["total"] == 1 and client.get("/jobs").json()[0]["id"] == job["id"]
        time.sleep(0.6)  # the serving engine follows the job's write
        listed = {v["path"]: v["video_id"] for v in client.get("/videos").json()}
        assert len(listed) == 3 and str(library / "v5.mp4") not in listed
        top = client.get("/search", params={"q": "volcano lava eruption", "k": 1}).json()["hits"][0]
        assert top["video"] == str((root / "v3.mp4").resolve())

        gone = client.delete(f"/videos/{top['video_id']}")
        assert gone.status_code == 200 and gone.json()["deleted"][0]["video_id"] == top["video_id"]
        assert top["video_id"] not in {v["video_id"] for v in client.get("/videos").json()}
        assert client.delete(f"/videos/{top['video_id']}").status_code == 404
        assert client.get("/jobs/job-999").status_code == 404
    jobs.close()
    worker.close()
    client, worker, jobs = client_for(store)  # no media root: nothing can be indexed
    with client:
        got = client.post("/videos", json={"paths": ["v3.mp4"]})
        assert got.status_code == 403 and "--media-root" in got.json()["error"]
    worker.close()


def test_image_uploads_without_the_visual_modality_are_refused_clearly(client):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buf, format="PNG")
    got = client.post("/search/image", files={"image": ("q.png", buf.getvalue(), "image/png")}, data={"k": "3"})
    assert got.status_code == 400 and "image queries need the visual modality" in got.json()["error"]
    got = client.post("/classify", files=[("images", ("q.png", buf.getvalue(), "image/png"))], data={"labels": "cat, dog"})
    assert got.status_code == 400 and "visual modality" in got.json()["error"]
    got = client.post("/search/image", data={"k": "3"})
    assert got.status_code == 400 and "'image' is required" in got.json()["error"]


def test_image_upload_search_and_classify(visual_built, cut_video):  # noqa: F811 - the fixture
    import av

    from egorag.config import load_config
    from egorag.engine import Engine

    db, cfg = visual_built
    buf = io.BytesIO()
    with av.open(str(cut_video)) as c:
        frame = next(f for f in c.decode(video=0) if f.time >= 4.5)
    frame.to_image().save(buf, format="PNG")
    client, worker, jobs = client_for(db, served_engine=Engine(db, load_config(cfg)))
    with client:
        got = client.post("/search/image", files={"image": ("frame.png", buf.getvalue(), "image/png")}, data={"k": "1"})
        assert got.status_code == 200 and got.json()["hits"][0]["scene"] == 3, got.json()
        got = client.post("/classify", files=[("images", ("frame.png", buf.getvalue(), "image/png")),
                                              ("images", ("again.png", buf.getvalue(), "image/png"))],
                          data={"labels": "a red screen\na blue screen"})
        results = got.json()["results"]
        assert got.status_code == 200 and [r["item"] for r in results] == ["frame.png", "again.png"]
        assert results[0]["probabilities"] == pytest.approx(results[1]["probabilities"]) and sum(results[0]["probabilities"].values()) == pytest.approx(1.0)
        got = client.post("/search/image", files={"image": ("bad.png", b"not an image", "image/png")})
        assert got.status_code == 400 and "'image'" in got.json()["error"]
    worker.close()


SERVE = """
import sys
sys.path.insert(0, {tests!r})
from writer_proc import engine
from egorag.server import EgoragServer
server = EgoragServer(engine({db!r}), port=0, api_key={key!r}, media_root={root!r})
print("serving on", server.url, flush=True)
server.serve_forever()
"""


def test_a_real_server_process(store, library, tmp_path):
    import urllib.request

    root = tmp_path / "media"
    root.mkdir()
    (root / "v5.mp4").write_bytes((library / "v5.mp4").read_bytes())
    code = SERVE.format(tests=str(TESTS), db=str(store), key=KEY, root=str(root))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        line = proc.stdout.readline()
        assert "serving on" in line, proc.stderr.read()
        url = line.split()[-1]

        def call(path, body=None, method=None, key=KEY):
            headers = {"Content-Type": "application/json"} if body is not None else {}
            if key:
                headers["X-API-Key"] = key
            req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                         headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        assert call("/health", key=None)[0] == 200
        assert call("/videos", key=None)[0] == 401
        status, hits = call("/search", {"q": "honey bees hive", "k": 2})
        assert status == 200 and hits["hits"][0]["video"] == str(library / "v4.mp4")
        status, job = call("/videos", {"paths": ["v5.mp4"]})
        assert status == 202
        deadline = time.monotonic() + 120
        while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.3)
            job = call(f"/jobs/{job['id']}")[1]
        assert job["state"] == "done" and len(job["report"]["indexed"]) == 1, job
        time.sleep(0.6)
        status, hits = call("/search", {"q": "saturn rings planet", "k": 1})
        assert status == 200 and hits["hits"][0]["video"] == str((root / "v5.mp4").resolve())
    finally:
        proc.terminate()
        proc.wait(20)


def test_two_servers_on_one_store_answer_alike_while_a_third_process_indexes(store, library):
    """Read replicas: each server opens the store read-only and follows the writer's commits."""
    import urllib.parse
    import urllib.request

    from writer_proc import QUERIES, finish
    from writer_proc import start as start_writer

    servers = []
    try:
        for _ in range(2):
            code = SERVE.format(tests=str(TESTS), db=str(store), key=None, root=None)
            proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env={**os.environ, "HF_HUB_OFFLINE": "1"})
            line = proc.stdout.readline()
            assert "serving on" in line, proc.stderr.read()
            servers.append((proc, line.split()[-1]))

        def hits(url, q):
            with urllib.request.urlopen(url + "/search?" + urllib.parse.urlencode({"q": q, "k": 5}), timeout=60) as r:
                return [(h["scene_id"], round(h["score"], 5)) for h in json.loads(r.read())["hits"]]

        writer = start_writer({"db": str(store), "op": "index", "paths": [str(library)], "seed": 5, "pause": 0.2})
        while writer.poll() is None:  # both keep answering while the writer commits
            for _, url in servers:
                assert hits(url, QUERIES[0])
        finish(writer)
        time.sleep(1.0)  # each follows the new version within half a second
        for q in QUERIES:
            assert hits(servers[0][1], q) == hits(servers[1][1], q)
        with urllib.request.urlopen(servers[0][1] + "/videos", timeout=30) as r:
            assert len(json.loads(r.read())) == 4
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(20)


def test_a_bug_is_a_500_without_its_traceback(store, monkeypatch, caplog):
    import logging

    served_engine = engine(str(store))
    _, worker, jobs = client_for(store, served_engine=served_engine)
    app = Guard(create_app(served_engine, worker, jobs, lambda: None), None)
    client = TestClient(app, raise_server_exceptions=False)  # as a real server: the client sees only the answer

    def broken():
        raise RuntimeError("secret internals at /srv/egorag/engine.py line 42")

    monkeypatch.setattr(served_engine, "videos", broken)
    with client, caplog.at_level(logging.ERROR, "egorag.server"):
        got = client.get("/videos")
        assert got.status_code == 500 and got.json() == {"error": "internal error (RuntimeError); the server's log has the details"}
        assert "secret" not in got.text and "Traceback" not in got.text
        assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)  # the log has it
        assert client.get("/search", params={"q": "bees"}).status_code == 200  # and the server goes on
    worker.close()


def test_an_index_job_over_hostile_files_reports_them_and_indexes_the_rest(store, library, tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    (root / "good.mp4").write_bytes((library / "v5.mp4").read_bytes())
    (root / "broken.mp4").write_bytes((library / "v3.mp4").read_bytes()[:2000])
    (root / "notes.mp4").write_text("not a video\n")
    os.mkfifo(root / "pipe.mp4")
    (root / "loop.mp4").symlink_to(root / "loop.mp4")
    client, worker, jobs = client_for(store, media_root=root)
    with client:
        job = wait_job(client, client.post("/videos", json={"paths": ["."]}).json()["id"])
        assert job["state"] == "done", job
        assert job["report"]["indexed"] == [str((root / "good.mp4").resolve())]
        failed = {Path(f["path"]).name for f in job["report"]["failed"]}
        assert {"broken.mp4", "notes.mp4"} <= failed, job["report"]
        assert client.get("/search", params={"q": "saturn rings"}).status_code == 200
    jobs.close()
    worker.close()
