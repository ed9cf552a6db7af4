"""egorag as an MCP tool server for agents (``egorag mcp --db DIR``; extra ``[mcp]``).

Tools: ``search_videos`` (scenes for a text query, with times and scores), ``ask_videos`` (an
answer citing scenes, or the evidence alone when no LLM is configured), ``list_videos`` and
``get_scene`` (a scene's words and its thumbnail as image content). Transports: stdio (what
desktop agents launch), or streamable HTTP (``--http``) at ``/mcp``.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from egorag import SceneFilter
from egorag.errors import EgoragError, LLMError, MissingExtraError

try:
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.mcpserver.utilities.types import Image
except ImportError as exc:  # pragma: no cover - the extra is part of the test set-up
    raise MissingExtraError("mcp", "mcp") from exc

INSTRUCTIONS = (
    "Search a library of indexed videos by what is said, shown on screen or seen in them. "
    "search_videos returns time-stamped scenes (start/end/moment in seconds); ask_videos answers a "
    "question citing scenes; get_scene returns one scene's words and a thumbnail."
)


def _said(fn: Callable) -> Callable:
    """egorag's errors reach the agent as the tool's error text (what to fix), not a bare failure."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EgoragError as exc:
            raise ToolError(str(exc)) from exc

    return call


def create_server(engine) -> MCPServer:
    """The MCP server over ``engine``: its tools call the engine one at a time."""
    server = MCPServer("egorag", instructions=INSTRUCTIONS)
    lock = threading.Lock()  # sync tools run on worker threads; the engine takes one caller at a time

    @server.tool()
    @_said
    def search_videos(
        query: Annotated[str, Field(description="what to find: words said, text on screen, or what is seen")],
        k: Annotated[int, Field(ge=1, le=50, description="how many scenes")] = 5,
        video: Annotated[str | None, Field(description="only this video id (see list_videos)")] = None,
        start: Annotated[str | None, Field(description="only scenes ending after this time (seconds or mm:ss)")] = None,
        end: Annotated[str | None, Field(description="only scenes starting before this time (seconds or mm:ss)")] = None,
        audio_event: Annotated[str | None, Field(description="only scenes tagged with this audio event (e.g. dog, music)")] = None,
        speaker: Annotated[str | None, Field(description="only scenes where this speaker talks (e.g. speaker_00)")] = None,
    ) -> str:
        """Find the scenes of the indexed videos that match a query, best first, each with its
        video, start and end seconds, the moment the query matched, its words and its scores."""
        with lock:
            result = engine.search(query, k=k, where=SceneFilter.parse(video, None, start, end, audio_event, speaker))
        hits = [{key: h[key] for key in ("scene_id", "video_id", "video", "start", "end", "moment", "moment_text", "moment_source", "score", "transcript",
                                          "screen_text", "caption", "audio_events", "speakers")} for h in result.to_dict()["hits"]]
        return json.dumps({"query": query, "hits": hits}, indent=1)

    @server.tool()
    @_said
    def ask_videos(
        question: Annotated[str, Field(description="a question the videos can answer")],
        k: Annotated[int, Field(ge=1, le=50, description="scenes of evidence")] = 5,
        video: Annotated[str | None, Field(description="only this video id")] = None,
    ) -> str:
        """Answer a question from the videos, citing the scenes used. When egorag's LLM is not
        reachable, returns the evidence scenes and the prompt for you to answer from."""
        where = SceneFilter.parse(video)
        with lock:
            try:
                return json.dumps(engine.ask(question, k=k, where=where).to_dict(), indent=1)
            except LLMError as exc:
                evidence = engine.ask(question, k=k, where=where, use_llm=False).to_dict()
                return json.dumps({**evidence, "llm_error": str(exc)}, indent=1)

    @server.tool()
    @_said
    def list_videos() -> str:
        """The indexed videos: id, path, duration in seconds, scene count."""
        with lock:
            return json.dumps([v.summary() for v in engine.videos()], indent=1)

    @server.tool(structured_output=False)  # text and image content, not a JSON object
    @_said
    def get_scene(scene_id: Annotated[str, Field(description="a scene id from search_videos")]) -> list[Any]:
        """One scene: its times, transcript, on-screen text, caption, and thumbnail image."""
        with lock:
            scene = engine.scene(scene_id)
            try:
                jpeg = engine.thumbnail(scene_id)
            except EgoragError:  # a store indexed without thumbnails
                jpeg = None
        record = {"scene_id": scene.scene_id, "video_id": scene.video_id, "video": scene.video_path, "start": scene.start,
                  "end": scene.end, "transcript": scene.transcript, "screen_text": scene.screen_text, "caption": scene.caption}
        return [json.dumps(record, indent=1)] + ([Image(data=jpeg, format="jpeg")] if jpeg else [])

    return server
