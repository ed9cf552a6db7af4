"""The server under abuse, on loopback and bounded in time: slow, partial and chunked bodies,
idle connections, huge declared lengths, images and batches, clients that leave mid-answer,
and searches under load while another process indexes into the same store. Nobody blocks
anybody, every refusal the app makes is a JSON error (what the HTTP parser itself refuses is
its plain 400), and nothing prints a traceback."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_server import request, start
from writer_proc import QUERIES, engine, finish
from writer_proc import start as start_writer

from egorag.server import guard, runner

TIMEOUT_S = 1.0


@pytest.fixture
def served(library, tmp_path, monkeypatch):
    monkeypatch.setattr(guard, "BODY_TIMEOUT_S", TIMEOUT_S)
    monkeypatch.setattr(runner, "KEEP_ALIVE_S", TIMEOUT_S)
    db = tmp_path / "db"
    engine(str(db)).index([library / "v3.mp4"])
    server = start(engine(str(db)))
    yield server
    server.shutdown()
    server.server_close()


def raw(server, data: bytes, wait: float = 5.0) -> bytes:
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=wait) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def status_and_json(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def quick_search(server) -> float:
    t0 = time.monotonic()
    status, got = request(server, "/search?" + urllib.parse.urlencode({"q": "volcano lava", "k": 3}))
    assert status == 200 and got["hits"]
    return time.monotonic() - t0


def test_stalled_bodies_and_idle_connections_block_nobody(served):
    host, port = served.server_address[:2]
    stalled = []
    for i in range(40):  # half send a partial body and stall, half send nothing at all
        s = socket.create_connection((host, port))
        if i % 2:
            s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"q\"")
        stalled.append(s)
    try:
        assert quick_search(served) < TIMEOUT_S  # answered while 40 connections hang
        for i, s in enumerate(stalled):  # each is closed by the server after its timeout, the partial ones with a 408
            s.settimeout(TIMEOUT_S * 5)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
            if i % 2:
                assert status_and_json(got) == (408, {"error": f"the request body did not arrive within {TIMEOUT_S:.0f} s"})
            else:
                assert got == b""  # closed: it never sent a request
    finally:
        for s in stalled:
            s.close()
    assert quick_search(served) < TIMEOUT_S


@pytest.mark.parametrize("data, status, message", [
    (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n", 413, "over the limit"),
    (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 400, "not JSON"),
    (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab", 408, "did not arrive"),
    (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n{\"q\": 1}", 400, "Content-Type: application/json"),
])
def test_malformed_requests_get_json_errors(served, data, status, message):
    got_status, got = status_and_json(raw(served, data))
    assert got_status == status and message.lower() in got["error"].lower()


@pytest.mark.parametrize("data", [b"GET /search HTTP/abc\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                                  b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"])
def test_what_is_not_http_is_refused_by_the_parser(served, data):
    head = raw(served, data).split(b"\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 400")
    assert quick_search(served) < TIMEOUT_S


def test_huge_numbers_batches_and_images_are_refused(served):
    assert request(served, "/search", b'{"q": "lava", "k": 1e400}')[0] == 400
    status, got = request(served, "/search", {"queries": ["lava"] * 3000})
    assert status == 413 and "at most 256" in got["error"]
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (20_000, 2_001)).save(buffer, format="PNG")
    status, got = request(served, "/search", {"image": base64.b64encode(buffer.getvalue()).decode()})
    assert status == 400 and "image queries need the visual modality" in got["error"]


def test_clients_that_leave_mid_answer_print_no_traceback(served, caplog):
    host, port = served.server_address[:2]
    with caplog.at_level(logging.DEBUG, "egorag"):
        for _ in range(20):
            s = socket.create_connection((host, port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset on close
            s.sendall(b"GET /search?q=volcano+lava&k=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
            s.close()
        quick_search(served)  # answered after the abandoned ones
        time.sleep(0.2)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_searches_under_load_while_another_process_indexes(served, library):
    writer = start_writer({"db": str(served.engine.db), "op": "index", "paths": [str(library)], "seed": 3, "pause": 0.2})
    statuses, deadline = [], time.monotonic() + 120

    def client(i: int) -> None:
        n = 0
        while (writer.poll() is None or n < 5) and time.monotonic() < deadline and n < 400:
            status, got = request(served, "/search?" + urllib.parse.urlencode({"q": QUERIES[(i + n) % len(QUERIES)], "k": 5}))
            statuses.append(status)
            n += 1

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(client, range(4)))
    finish(writer)
    assert statuses and set(statuses) == {200}, statuses
    time.sleep(1.0)  # the server follows the writer within half a second
    status, videos = request(served, "/videos")
    assert status == 200 and len(videos) == 4
