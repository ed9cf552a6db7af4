"""Where integrations get scenes from: a local engine or an ``egorag serve`` URL, behind one
protocol, and the one shape a hit takes as a framework's document."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from egorag.errors import EgoragError


class SceneSource(Protocol):
    """Text search over indexed scenes, hits as ``egorag search --json`` prints them."""

    def search(self, query: str, k: int, filters: dict[str, Any] | None = None) -> list[dict]: ...

    def thumbnail_url(self, scene_id: str) -> str | None: ...


class LocalSource:
    """An :class:`~egorag.engine.Engine` in this process (``filters``: ``video``, ``path``,
    ``from``, ``to``, ``audio_event``, ``speaker`` as the HTTP API takes them)."""

    def __init__(self, engine, base_url: str | None = None):
        self.engine, self.base_url = engine, base_url and base_url.rstrip("/")

    def search(self, query: str, k: int, filters: dict[str, Any] | None = None) -> list[dict]:
        from egorag import SceneFilter

        f = filters or {}
        where = SceneFilter.parse(f.get("video"), f.get("path"), f.get("from"), f.get("to"), f.get("audio_event"), f.get("speaker"))
        return self.engine.search(query, k=k, where=where).to_dict()["hits"]

    def thumbnail_url(self, scene_id: str) -> str | None:
        """Where a server over the same store serves the thumbnail (``base_url``), if one was given."""
        return f"{self.base_url}/scenes/{urllib.parse.quote(scene_id, safe=':')}/thumbnail" if self.base_url else None


class RemoteSource:
    """An ``egorag serve`` URL (``api_key``: the server's key, if it has one)."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 60.0):
        self.url, self.api_key, self.timeout_s = url.rstrip("/"), api_key, timeout_s

    def search(self, query: str, k: int, filters: dict[str, Any] | None = None) -> list[dict]:
        return self.post("/search", {"q": query, "k": k, **(filters or {})})["hits"]

    def thumbnail_url(self, scene_id: str) -> str | None:
        return f"{self.url}/scenes/{urllib.parse.quote(scene_id, safe=':')}/thumbnail"

    def post(self, path: str, body: dict) -> Any:
        return self.request(path, json.dumps(body).encode())

    def request(self, path: str, data: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except (json.JSONDecodeError, AttributeError):
                message = exc.reason
            raise EgoragError(f"{self.url}{path}: {exc.code} {message}") from None
        except urllib.error.URLError as exc:
            raise EgoragError(f"cannot reach the egorag server at {self.url} ({exc.reason}); is `egorag serve` running?") from None


def source_for(engine=None, url: str | None = None, api_key: str | None = None, base_url: str | None = None) -> SceneSource:
    """A local source for ``engine``, or a remote one for ``url`` (exactly one of them)."""
    if (engine is None) == (url is None):
        raise EgoragError("give either an engine (egorag.Engine) or the url of an `egorag serve` server")
    return LocalSource(engine, base_url) if engine is not None else RemoteSource(url, api_key)


@dataclass(frozen=True)
class SceneDocument:
    """A hit as a framework's document: the scene's words and where to watch them."""

    id: str
    text: str
    score: float
    metadata: dict[str, Any]


def scene_document(hit: dict, source: SceneSource) -> SceneDocument:
    parts = [hit.get("transcript") or "", hit.get("screen_text") and f"On screen: {hit['screen_text']}",
             hit.get("caption") and f"Visuals: {hit['caption']}"]
    metadata = {
        "scene_id": hit["scene_id"], "video_id": hit["video_id"], "video": hit["video"], "scene": hit["scene"],
        "start": hit["start"], "end": hit["end"], "moment": hit.get("moment"), "score": hit["score"],
        "scores": hit.get("scores", {}), "thumbnail_url": source.thumbnail_url(hit["scene_id"]),
    }
    return SceneDocument(hit["scene_id"], "\n".join(p for p in parts if p), float(hit["score"]), metadata)
