"""A JSON HTTP API over :class:`~egorag.engine.Engine` (standard library only).

Routes (GET takes query-string parameters, POST a JSON object with the same names):

- ``GET /health``: ``{"status": "ok", "db": ..., "videos": n}``
- ``GET /videos``: the indexed videos, as ``egorag videos --json`` lists them
- ``GET|POST /search``: ``q`` (or ``query``/``text``), ``k`` (10), ``video`` (an id, or a list),
  ``path`` (glob), ``from``/``to`` (seconds, mm:ss or hh:mm:ss); POST also takes ``image``, a
  base64-encoded image file. Answers what ``egorag search --json`` prints. POST ``queries``
  (a list of texts, with ``k`` and the filters) answers ``{"results": [...]}``, one each, as
  ``Engine.search_many`` does.
- ``GET|POST /ask``: ``q`` (or ``question``), ``k``, ``no_llm``, and the filters above: what
  ``egorag ask --json`` prints.

Errors are ``{"error": message}`` with 400 (bad request, or what the engine refused: the
message says what to do), 404 (no such route), 413 (body over 32 MB), 502 (the LLM endpoint failed) or 500 (a bug:
logged with its traceback).
The engine runs on one thread (:mod:`egorag.server.worker`); handler threads only parse, wait
and write, and an LLM's answer is awaited on the handler's thread so that searches go on.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from egorag.errors import EgoragError, LLMError, MediaError
from egorag.server.worker import MAX_BATCH, EngineWorker, SearchRequest
from index.base import SceneFilter
from retrieval.hits import parse_time

logger = logging.getLogger("egorag.server")

MAX_BODY = 32 << 20  # bytes: a base64 image query, with room to spare
MAX_K = 1000
MAX_QUERIES = 256  # texts in one POST /search: a batch holds the engine thread for all of them
REQUEST_TIMEOUT_S = 30.0


class BadRequest(ValueError):
    """The request is malformed; the message says how (``status``: the HTTP status to answer)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class EgoragServer(ThreadingHTTPServer):
    """The HTTP server; ``worker`` owns the engine. Port 0 picks a free port
    (``server_address`` has the one bound)."""

    daemon_threads = True

    def __init__(self, engine, host: str = "127.0.0.1", port: int = 8765, max_batch: int = MAX_BATCH):
        self.engine = engine
        self.worker = EngineWorker(engine, max_batch)
        self._chat = None
        self._chat_lock = threading.Lock()
        try:
            # open the store and load the query encoders now, not on the first request
            self.worker.call(engine.retriever)
            super().__init__((host, port), Handler)
        except BaseException:
            self.worker.close()
            raise

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def server_close(self) -> None:
        super().server_close()
        self.worker.close()

    def handle_error(self, request, client_address) -> None:
        """A client that left or stalled (a broken pipe, a reset, a timeout) is not an error of
        the server's: logged at debug, without a traceback. Anything else is logged in full."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.debug("%s: connection ended (%s)", client_address, type(exc).__name__)
            return
        logger.exception("request from %s failed", client_address)

    def chat_model(self):
        """The configured LLM client, made once (a local model loads once per server)."""
        from retrieval.answer import OpenAIChatClient, create_chat_model

        with self._chat_lock:
            if self._chat is None:
                chat = create_chat_model(self.engine.config.answer)
                # an HTTP endpoint takes concurrent requests; a local model generates one at a time
                self._chat = chat if chat is None or isinstance(chat, OpenAIChatClient) else _OneAtATime(chat)
            return self._chat


class _OneAtATime:
    """A chat model whose ``chat`` calls are serialised (a local transformers model)."""

    def __init__(self, chat):
        self._inner, self._lock = chat, threading.Lock()

    def chat(self, *args, **kwargs) -> str:
        with self._lock:
            return self._inner.chat(*args, **kwargs)


class Handler(BaseHTTPRequestHandler):
    server: EgoragServer
    protocol_version = "HTTP/1.1"  # keep-alive: a client's queries reuse its connection
    # the headers and the body go out in two writes: with Nagle's algorithm on, the body waits
    # for the client's delayed ACK of the headers (40 ms a request on Linux)
    disable_nagle_algorithm = True
    timeout = REQUEST_TIMEOUT_S  # a socket that sends nothing for this long is closed

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own errors (a malformed request line or headers) as JSON too, with
        a status line even when the request line was too broken to name an HTTP version."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        self._reply(code, {"error": message or explain or "bad request"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        logger.info("%s %s", self.address_string(), format % args)

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        route = ROUTES.get(url.path.rstrip("/") or "/")
        try:
            params = self._params(method, url.query)
            if route is None:
                status, payload = 404, {"error": f"no such route: {url.path} (try /search, /ask, /videos, /health)"}
            else:
                status, payload = 200, route(self.server, params)
        except LLMError as exc:  # the answerer's upstream failed, not the request
            status, payload = 502, {"error": f"{exc}; or send \"no_llm\": true for the prompt and evidence without an answer"}
        except BadRequest as exc:
            status, payload = exc.status, {"error": str(exc)}
        except EgoragError as exc:
            status, payload = 400, {"error": str(exc)}
        except Exception as exc:
            logger.exception("%s %s failed", method, self.path)
            status, payload = 500, {"error": f"internal error ({type(exc).__name__}); the server's log has the details"}
        self._reply(status, payload)

    def _params(self, method: str, query: str) -> dict[str, Any]:
        params: dict[str, Any] = {k: v if k == "video" else v[-1] for k, v in parse_qs(query).items()}
        if method == "POST":
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                self.close_connection = True  # the chunks are not read: they must not pass for a request
                raise BadRequest("send the body with a Content-Length (chunked transfer encoding is not supported)", status=411)
            declared = self.headers.get("Content-Length") or "0"
            length = int(declared) if declared.isdigit() else -1
            if not 0 <= length <= MAX_BODY:
                self.close_connection = True  # the body is not read: it must not pass for a request
                if length < 0:
                    raise BadRequest(f"bad Content-Length: {declared!r}")
                raise BadRequest(f"request body of {length} bytes is over the limit of {MAX_BODY}", status=413)
            try:
                body = self.rfile.read(length) if length else b""
            except TimeoutError:
                self.close_connection = True
                raise BadRequest(f"the request body did not arrive within {self.timeout:.0f} s", status=408) from None
            if len(body) < length:
                self.close_connection = True
                raise BadRequest(f"the request body ended after {len(body)} of its {length} bytes")
            if body.strip():
                try:
                    data = json.loads(body)
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise BadRequest(f"the body is not JSON: {exc}") from None
                if not isinstance(data, dict):
                    raise BadRequest("the body must be a JSON object")
                params.update(data)
        return params

    def _reply(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _text(params: dict, *names: str) -> str | None:
    for name in names:
        value = params.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise BadRequest(f"{name!r} must be a string")
            return value if value.strip() else None
    return None


def _k(params: dict, default: int) -> int:
    value = params.get("k", default)
    try:
        k = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"'k' must be an integer, got {value!r}") from None
    if isinstance(value, (bool, float)) or not 1 <= k <= MAX_K:
        raise BadRequest(f"'k' must be an integer from 1 to {MAX_K}, got {value!r}")
    return k


def _where(params: dict) -> SceneFilter | None:
    videos = params.get("video", ())
    videos = [videos] if isinstance(videos, str) else videos
    if not isinstance(videos, (list, tuple)) or not all(isinstance(v, str) for v in videos):
        raise BadRequest("'video' must be a video id or a list of them")
    path = params.get("path")
    if path is not None and not isinstance(path, str):
        raise BadRequest("'path' must be a glob string")
    times = {}
    for name in ("from", "to"):
        if params.get(name) is not None:
            try:
                times[name] = parse_time(params[name])
            except ValueError as exc:
                raise BadRequest(f"{name!r}: {exc}") from None
    where = SceneFilter(tuple(videos), path, times.get("from"), times.get("to"))
    return None if where.is_empty() else where


def _image(server: EgoragServer, params: dict):
    data = params.get("image")
    if data is None:
        return None
    if not isinstance(data, str):
        raise BadRequest("'image' must be a base64-encoded image file")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("'image' is not valid base64") from None
    from egorag.images import load_image

    server.worker.call(server.engine.check_image_queries)  # before the image is decoded
    try:
        return load_image(io.BytesIO(raw))
    except MediaError as exc:
        raise BadRequest(f"'image': {exc.reason}") from None


def search(server: EgoragServer, params: dict) -> dict:
    if "queries" in params:  # several text queries in one request: Engine.search_many
        texts = params["queries"]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise BadRequest("'queries' must be a non-empty list of non-blank strings")
        if len(texts) > MAX_QUERIES:
            raise BadRequest(f"'queries' holds {len(texts)} texts; send at most {MAX_QUERIES} in one request", status=413)
        k, where = _k(params, 10), _where(params)
        results = server.worker.call(lambda: server.engine.search_many(texts, k=k, where=where))
        return {"results": [r.to_dict() for r in results]}
    text, image = _text(params, "q", "query", "text"), _image(server, params)
    if text is None and image is None:
        raise BadRequest("search needs a text query ('q') or an image ('image', POST)")
    result = server.worker.search(SearchRequest(text, image, _k(params, 10), _where(params)))
    return result.to_dict()


def ask(server: EgoragServer, params: dict) -> dict:
    from retrieval.answer import answer

    question = _text(params, "q", "question")
    if question is None:
        raise BadRequest("ask needs a question ('q')")
    config = server.engine.config.answer
    no_llm = params.get("no_llm", False)
    if isinstance(no_llm, str):
        no_llm = no_llm.lower() in ("1", "true", "yes")
    hits = server.worker.search(SearchRequest(question, None, _k(params, config.k), _where(params))).hits
    chat = None if no_llm else server.chat_model()
    return answer(question, hits, chat, config).to_dict()


def videos(server: EgoragServer, params: dict) -> list[dict]:
    return [v.summary() for v in server.worker.call(server.engine.videos)]


def health(server: EgoragServer, params: dict) -> dict:
    return {"status": "ok", "db": str(server.engine.db), "videos": len(server.worker.call(server.engine.videos))}


ROUTES = {"/search": search, "/ask": ask, "/videos": videos, "/health": health}
