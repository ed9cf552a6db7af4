"""The HTTP server (``egorag serve``): routes and their JSON, errors, concurrent queries answered
in batches with the same hits, other processes' writes followed, the LLM answerer behind it."""

import base64
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from conftest import make_video
from PIL import Image
from test_answer import OpenAIStub, openai_server  # noqa: F401 - a fixture
from test_cli import visual_built  # noqa: F401 - a fixture
from test_engine import config, models

from egorag.cli import main
from egorag.config import AnswerConfig
from egorag.engine import Engine
from egorag.server import EgoragServer, EngineWorker, SearchRequest
from index.snapshot import CHECK_S as VERSION_CHECK_S

QUERIES = ["volcano lava eruption", "bread dough in the oven", "honey bees hive", "saturn rings planet", "magma",
           "flour", "queen bee", "moons of a planet"]


def start(engine, max_batch=32):
    server = EgoragServer(engine, port=0, max_batch=max_batch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture
def db(tmp_path, cut_video):
    db = tmp_path / "db"
    Engine(db, config(), models=models()).index([cut_video])
    return db


@pytest.fixture
def served(db):
    server = start(Engine(db, config(), models=models()))
    yield server
    server.shutdown()
    server.server_close()


def request(server, path, body=None, method=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(server.url + path, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_search_answers_what_the_library_answers(served, db, cut_video):
    library = Engine(db, config(), models=models())
    for q in QUERIES:
        status, got = request(served, "/search?" + urllib.parse.urlencode({"q": q, "k": 3}))
        assert status == 200 and got == json.loads(json.dumps(library.search(q, k=3).to_dict()))
    status, got = request(served, "/search", {"query": "honey bees hive", "k": 1})
    assert status == 200 and got["query"] == "honey bees hive" and len(got["hits"]) == 1
    top = got["hits"][0]
    assert top["video"] == str(cut_video.resolve()) and top["scene"] == 2 and "honey" in top["transcript"]


def test_many_queries_in_one_request(served, db):
    library = Engine(db, config(), models=models())
    status, got = request(served, "/search", {"queries": QUERIES[:3], "k": 2})
    assert status == 200 and got == json.loads(json.dumps({"results": [r.to_dict() for r in library.search_many(QUERIES[:3], k=2)]}))
    for bad in ([], ["bees", "  "], "bees", [3]):
        status, got = request(served, "/search", {"queries": bad})
        assert status == 400 and "'queries' must be a non-empty list" in got["error"]


def test_filters_and_listing(served, cut_video):
    status, videos = request(served, "/videos")
    assert status == 200 and [v["path"] for v in videos] == [str(cut_video.resolve())] and videos[0]["scenes"] == 4
    video_id = videos[0]["video_id"]
    assert request(served, "/health") == (200, {"status": "ok", "db": str(served.engine.db), "videos": 1, "indexing": False})
    status, got = request(served, "/search", {"q": "saturn rings planet", "video": [video_id], "from": "00:02", "to": 3.5})
    assert status == 200 and got["hits"] and all(h["end"] > 2.0 and h["start"] < 3.5 for h in got["hits"])
    assert all(h["scene"] != 3 for h in got["hits"])  # saturn's scene starts at 4 s: filtered out
    status, got = request(served, f"/search?q=saturn&video={video_id}")
    assert status == 200 and got["hits"][0]["scene"] == 3
    status, got = request(served, f"/search?q=saturn&video={video_id}&video=other")  # one id is wrong: said
    assert status == 400 and "no indexed video has the id 'other'" in got["error"]
    assert request(served, "/search?q=saturn&path=*/elsewhere/*")[1]["hits"] == []


@pytest.mark.parametrize("path, body, status, message", [
    ("/search", None, 400, "needs a text query"),
    ("/search?q=bees&k=abc", None, 400, "'k' must be an integer"),
    ("/search?q=bees&k=0", None, 400, "from 1 to"),
    ("/search", b"{not json", 400, "not JSON"),
    ("/search", [1, 2], 400, "must be a JSON object"),
    ("/search", {"q": "bees", "from": "ten"}, 400, "'from': not a time"),
    ("/search", {"q": "bees", "video": 7}, 400, "'video' must be"),
    ("/search", {"image": "%%%"}, 400, "not valid base64"),
    # the store has no visual modality: said before the image is decoded (a huge image costs nothing)
    ("/search", {"image": base64.b64encode(b"hello").decode()}, 400, "image queries need the visual modality"),
    ("/ask", {}, 400, "needs a question"),
    ("/search", {"q": "bees", "k": True}, 400, "'k' must be an integer from 1"),
    ("/search", {"q": "bees", "top": 3}, 400, "'top': unknown field"),
    ("/nowhere", None, 404, "no such route"),
])
def test_bad_requests_get_a_clear_error(served, path, body, status, message):
    got_status, got = request(served, path, body)
    assert got_status == status and message in got["error"], got
    assert request(served, "/search?q=bees")[0] == 200  # and the server goes on


def test_a_body_over_the_limit_or_with_a_bad_length_is_refused_unread(served, monkeypatch):
    import http.client

    monkeypatch.setattr(served.app, "max_body", 100)
    host, port = served.server_address[:2]
    for length, body, status, message in [("101", b"x" * 101, 413, "over the limit of 100"), ("ten", b"{}", 400, "")]:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.putrequest("POST", "/search")
        conn.putheader("Content-Length", length)
        conn.endheaders(body)
        response = conn.getresponse()
        # a Content-Length that is not a number is refused by the HTTP parser itself (plain text)
        assert response.status == status and message in response.read().decode()
        conn.close()
    # a chunked body is counted as it arrives
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("POST", "/search", body=iter([b'{"q": "', b"b" * 200, b'"}']), headers={"Content-Type": "application/json"},
                 encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and "over the limit of 100" in json.loads(response.read())["error"]
    conn.close()
    assert request(served, "/search?q=bees")[0] == 200


def test_an_image_query_without_the_visual_modality_says_so(served, db):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, format="PNG")
    status, got = request(served, "/search", {"image": base64.b64encode(buf.getvalue()).decode()})
    assert status == 400 and "image queries need the visual modality" in got["error"] and "indexed without it" in got["error"]


def hold(worker):
    """Keep ``worker``'s engine thread busy until the returned event is set."""
    gate, running = threading.Event(), threading.Event()
    blocked = threading.Thread(target=worker.call, args=(lambda: running.set() or gate.wait(),))
    blocked.start()
    assert running.wait(20)
    return gate, blocked


def test_concurrent_queries_are_answered_in_one_batch_with_the_same_hits(served, db):
    single = {q: request(served, "/search?" + urllib.parse.urlencode({"q": q, "k": 4}))[1] for q in QUERIES}
    gate, blocked = hold(served.worker)  # the engine thread waits while the queries queue up
    with ThreadPoolExecutor(len(QUERIES)) as pool:
        futures = [pool.submit(request, served, "/search?" + urllib.parse.urlencode({"q": q, "k": 4})) for q in QUERIES]
        deadline = time.monotonic() + 20
        while served.worker._jobs.qsize() < len(QUERIES) and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        answers = [f.result() for f in futures]
    blocked.join()
    assert served.worker.batches == [len(QUERIES)]
    assert [a for _, a in answers] == [single[q] for q in QUERIES]


class FlakyEngine:
    """An engine double: a batch containing "boom" fails, as does "boom" on its own."""

    def __init__(self):
        self.calls = []

    def search(self, text, image=None, k=10, where=None):
        self.calls.append(("search", text))
        if text == "boom":
            raise ValueError("boom is not a query")
        return f"{text}/{k}"

    def search_many(self, texts, k=10, where=None):
        self.calls.append(("search_many", tuple(texts)))
        if "boom" in texts:
            raise ValueError("a batch with boom")
        return [f"{t}/{k}" for t in texts]


def test_one_failing_query_does_not_fail_its_batch():
    engine = FlakyEngine()
    worker = EngineWorker(engine, max_batch=8)
    gate, blocked = hold(worker)
    results: dict = {}

    def ask(text, k):
        try:
            results[(text, k)] = worker.search(SearchRequest(text, k=k))
        except ValueError as exc:
            results[(text, k)] = exc

    threads = [threading.Thread(target=ask, args=args) for args in [("a", 5), ("boom", 5), ("b", 5), ("c", 3)]]
    for t in threads:
        t.start()
    while worker._jobs.qsize() < 4:
        time.sleep(0.01)
    gate.set()
    for t in threads:
        t.join()
    blocked.join()
    worker.close()
    assert results[("a", 5)] == "a/5" and results[("b", 5)] == "b/5" and results[("c", 3)] == "c/3"
    assert isinstance(results[("boom", 5)], ValueError)
    assert ("search_many", ("a", "boom", "b")) in engine.calls and ("search", "c") in engine.calls  # k=3 alone
    assert worker.batches == [3]


def test_a_failure_outside_any_query_fails_its_requests_and_the_worker_goes_on(monkeypatch):
    worker = EngineWorker(FlakyEngine())
    monkeypatch.setattr(worker, "_answer", lambda jobs: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        worker.search(SearchRequest("a"))
    monkeypatch.undo()
    assert worker.search(SearchRequest("a", k=2)) == "a/2"
    worker.close()


def test_the_server_follows_another_process_writes(served, db, tmp_path):
    assert len(request(served, "/videos")[1]) == 1
    second = make_video(tmp_path / "second.mp4", [50], 100, audio_seconds=4.0, seed=3)
    Engine(db, config(), models=models()).index([second])  # another writer
    time.sleep(VERSION_CHECK_S + 0.1)
    videos = request(served, "/videos")[1]
    assert len(videos) == 2 and str(second.resolve()) in {v["path"] for v in videos}
    new = next(v["video_id"] for v in videos if v["path"] == str(second.resolve()))
    status, got = request(served, f"/search?q=bread+dough&video={new}")
    assert status == 200 and got["hits"] and {h["video_id"] for h in got["hits"]} == {new}


def test_ask_through_the_server(db, openai_server):  # noqa: F811 - the fixture
    cfg = replace(config(), answer=AnswerConfig(endpoint=openai_server, model="tiny-served", k=3))
    server = start(Engine(db, cfg, models=models()))
    try:
        status, got = request(server, "/ask", {"q": "where do honey bees live?"})
        assert status == 200 and got["answer"].startswith("The bees make honey [cuts.mp4 @ 00:02-00:04]")
        assert [h["scene"] for h in got["cited"]] == [2] and len(got["evidence"]) <= 3
        status, got = request(server, "/ask?q=where+do+honey+bees+live&no_llm=true")
        assert status == 200 and got["answer"] is None and "honey bees hive" in got["messages"][1]["content"]
        assert len(OpenAIStub.requests) == 1  # no_llm asked no LLM
    finally:
        server.shutdown()
        server.server_close()
    cfg = replace(config(), answer=AnswerConfig(endpoint="http://127.0.0.1:9/v1", timeout_s=2))
    server = start(Engine(db, cfg, models=models()))
    try:
        status, got = request(server, "/ask", {"q": "bees"})
        assert status == 502 and "could not reach the LLM endpoint" in got["error"]
        assert '"no_llm": true' in got["error"] and "--no-llm" not in got["error"]  # the HTTP field, not the CLI flag
    finally:
        server.shutdown()
        server.server_close()


def test_cli_serve_errors(db, tmp_path, capsys):
    cfg = tmp_path / "test.toml"
    cfg.write_text('modalities = ["text"]\n[text]\nencoder = "test-hash"\nmodel = "hash-64"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--db", str(db), "--config", str(cfg), "--port", str(port), "-q"]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["serve", "--db", str(db), "--config", str(cfg), "--max-batch", "0"]) == 1
    assert "--max-batch must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--db", str(tmp_path / "nothing"), "--config", str(cfg), "--port", "0"]) == 1
    assert "no egorag store here" in capsys.readouterr().err and not (tmp_path / "nothing").exists()
    assert main(["serve", "--db", str(db), "--config", str(cfg), "--host", "0.0.0.0", "--port", "0"]) == 1
    assert "give an --api-key" in capsys.readouterr().err
    assert main(["serve", "--db", str(db), "--config", str(cfg), "--port", "0", "--media-root", str(tmp_path / "none")]) == 1
    assert "--media-root" in capsys.readouterr().err


def test_an_image_query_through_the_server(visual_built, cut_video, tmp_path):  # noqa: F811 - the fixture
    import av

    from egorag.config import EngineConfig, load_config
    from egorag.errors import ModalityUnavailableError

    db, cfg = visual_built
    buf = io.BytesIO()
    with av.open(str(cut_video)) as c:
        frame = next(f for f in c.decode(video=0) if f.time >= 4.5)
    frame.to_image().save(buf, format="PNG")
    server = start(Engine(db, load_config(cfg)))
    try:
        status, got = request(server, "/search", {"image": base64.b64encode(buf.getvalue()).decode(), "k": 1})
        assert status == 200 and got["query"] == "<image>" and got["hits"][0]["scene"] == 3
        assert got["hits"][0]["similarities"]["visual"] > 0.99
    finally:
        server.shutdown()
        server.server_close()
    # the store has keyframes, but this engine's CLIP weights cannot load: the error says why
    buf.seek(0)
    loaded = load_config(cfg)  # with the modalities left to what loads, visual is just off
    no_weights = Engine(db, replace(loaded, modalities=EngineConfig().modalities, visual=replace(loaded.visual, pretrained=str(tmp_path / "missing.pt"))))
    with pytest.raises(ModalityUnavailableError, match="cannot load here: .*missing.pt"):
        no_weights.search(image=Image.open(buf))
