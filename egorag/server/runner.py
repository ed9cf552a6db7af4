"""``egorag serve``: the app on uvicorn, bound before it starts (port 0 picks a free port), with
the engine's thread, the index jobs and the LLM client it owns."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from pathlib import Path

from egorag.errors import EgoragError
from egorag.server.guard import MAX_BODY, Guard
from egorag.server.jobs import IndexJobs
from egorag.server.worker import MAX_BATCH, EngineWorker

logger = logging.getLogger("egorag.server")

KEEP_ALIVE_S = 30  # an idle keep-alive connection is closed after this long


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EgoragServer:
    """The HTTP server over ``engine``. ``api_key`` (None: none) is needed on every route but
    ``/health``, and to listen on any address but a loopback one. ``media_root`` is where
    ``POST /videos`` may index from (None: nowhere)."""

    def __init__(self, engine, host: str = "127.0.0.1", port: int = 8765, max_batch: int = MAX_BATCH, *,
                 api_key: str | None = None, media_root: str | Path | None = None, max_body: int = MAX_BODY):
        import uvicorn

        from egorag.server.app import create_app

        if not is_loopback(host) and not api_key:
            raise EgoragError(f"listening on {host} lets other machines in: give an --api-key (or $EGORAG_API_KEY)")
        if media_root is not None and not Path(media_root).is_dir():
            raise EgoragError(f"--media-root {media_root}: not a folder")
        self.engine = engine
        self.worker = EngineWorker(engine, max_batch)
        self.jobs = IndexJobs(engine, None if media_root is None else Path(media_root))
        self._chat = None
        self._chat_lock = threading.Lock()
        try:
            # open the store and load the query encoders now, not on the first request
            self.worker.call(engine.retriever)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            # proto=IPPROTO_TCP: the event loop turns Nagle's algorithm off on the connections
            # of such sockets only; with it on, a response's body waited for the client's delayed ACK of
            # its headers (40 ms a request)
            self.socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(2048)
        except BaseException:
            self.worker.close()
            raise
        self.server_address = self.socket.getsockname()
        self.app = Guard(create_app(engine, self.worker, self.jobs, self.chat_model), api_key, max_body)
        config = uvicorn.Config(self.app, http=_http_protocol(), log_level="warning", access_log=False,
                                timeout_keep_alive=KEEP_ALIVE_S, lifespan="off", server_header=False)
        self._uvicorn = uvicorn.Server(config)
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Answer requests until :meth:`shutdown` (or Ctrl-C when run on the main thread)."""
        try:
            self._uvicorn.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving (from another thread) and wait for :meth:`serve_forever` to return."""
        self._uvicorn.should_exit = True
        self._stopped.wait(10)

    def server_close(self) -> None:
        self.socket.close()
        self.jobs.close()
        self.worker.close()

    def chat_model(self):
        """The configured LLM client, made once (a local model loads once per server)."""
        from egorag import OpenAIChatClient, create_chat_model

        with self._chat_lock:
            if self._chat is None:
                chat = create_chat_model(self.engine.config.answer)
                # an HTTP endpoint takes concurrent requests; a local model generates one at a time
                self._chat = chat if chat is None or isinstance(chat, OpenAIChatClient) else _OneAtATime(chat)
            return self._chat


def _http_protocol():
    """uvicorn's HTTP/1.1 protocol (httptools' parser when installed, else h11), but a
    connection that sends nothing at all is closed after the keep-alive timeout too (uvicorn
    starts that timer only after a first response)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class Protocol(Base):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    return Protocol


class _OneAtATime:
    """A chat model whose ``chat`` calls are serialised (a local transformers model)."""

    def __init__(self, chat):
        self._inner, self._lock = chat, threading.Lock()

    def chat(self, *args, **kwargs) -> str:
        with self._lock:
            return self._inner.chat(*args, **kwargs)
