"""egorag's HTTP API on FastAPI: the routes, their parameters and their errors.

Every route but ``/health`` needs the API key when the server has one (``X-API-Key``,
``Authorization: Bearer``, or the cookie the page's sign-in sets). Searches take query-string
parameters (GET) or a JSON object with the same names (POST) and answer what
``egorag search --json`` prints; the OpenAPI description is at ``/openapi.json``. Errors are
``{"error": message}``: 400 for a request to fix (the message says how), 401 without the key,
403 for what this server does not allow, 404 for an unknown id or route, 413 for a body over
the limit, 502 when the LLM endpoint failed, 500 for a bug (logged, never sent).

The engine runs on one thread (:mod:`egorag.server.worker`); routes await its futures, so
waiting requests hold no thread and text queries that arrive together are answered in one batch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import mimetypes
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from egorag import SceneFilter, __version__
from egorag.errors import EgoragError, LLMError, MediaError, NotFoundError
from egorag.server.guard import COOKIE, BodyTimeout, BodyTooLarge
from egorag.server.jobs import IndexingDisabled, IndexJobs
from egorag.server.worker import EngineWorker, SearchRequest

logger = logging.getLogger("egorag.server")

MAX_K = 1000
MAX_QUERIES = 256  # texts in one POST /search: a batch holds the engine thread for all of them
MAX_LABELS = 1000
MAX_IMAGES = 64  # images in one POST /classify


class Filters(BaseModel):
    """Which scenes a search may return (all optional)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    video: str | list[str] | None = Field(None, description="a video id, or a list of them")
    path: str | None = Field(None, description="a glob over the videos' paths")
    from_: str | float | None = Field(None, alias="from", description="seconds, mm:ss or hh:mm:ss")
    to: str | float | None = Field(None, description="seconds, mm:ss or hh:mm:ss")
    audio_event: str | list[str] | None = Field(None, description="an audio event tag (e.g. dog), or a list: scenes with any of them")
    speaker: str | list[str] | None = Field(None, description="a speaker label (e.g. speaker_00), or a list: scenes where any talks")

    def where(self) -> SceneFilter | None:
        return SceneFilter.parse(self.video, self.path, self.from_, self.to, self.audio_event, self.speaker)


def query_filters(video: Annotated[list[str] | None, Query(description="a video id (repeatable)")] = None,
                  path: Annotated[str | None, Query(description="a glob over the videos' paths")] = None,
                  from_: Annotated[str | None, Query(alias="from", description="seconds, mm:ss or hh:mm:ss")] = None,
                  to: Annotated[str | None, Query(description="seconds, mm:ss or hh:mm:ss")] = None,
                  audio_event: Annotated[list[str] | None, Query(description="an audio event tag (repeatable: any of them)")] = None,
                  speaker: Annotated[list[str] | None, Query(description="a speaker label (repeatable: any of them)")] = None,
                  ) -> SceneFilter | None:
    """The filters of a GET request's query string (the same names as a POST body's)."""
    return SceneFilter.parse(video, path, from_, to, audio_event, speaker)


QueryFilters = Annotated[SceneFilter | None, Depends(query_filters)]


class SearchBody(Filters):
    q: str | None = Field(None, description="the text query (also 'query' or 'text')")
    query: str | None = None
    text: str | None = None
    image: str | None = Field(None, description="a base64-encoded image file: an image query")
    queries: list[str] | None = Field(None, description=f"several text queries (at most {MAX_QUERIES}), answered in one batch")
    k: int = Field(10, ge=1, le=MAX_K, strict=True)


class AskBody(Filters):
    q: str | None = Field(None, description="the question (also 'question')")
    question: str | None = None
    k: int | None = Field(None, ge=1, le=MAX_K, strict=True, description="scenes of evidence (default: the [answer] config's k)")
    no_llm: bool = Field(False, description="answer the prompt and evidence without calling the LLM")


class IndexBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(description="files or folders under the server's --media-root (relative to it, or absolute)",
                             min_length=1, max_length=1000)
    reindex: bool = False


def create_app(engine, worker: EngineWorker, jobs: IndexJobs, chat_model) -> FastAPI:
    """The app over ``engine`` (called only on ``worker``'s thread). ``chat_model()`` gives the
    configured LLM client (None: none configured)."""
    app = FastAPI(title="egorag", version=__version__,
                  description="Search hours of video by what is said, shown and written in it.")
    app.state.engine, app.state.worker, app.state.jobs = engine, worker, jobs

    async def on_engine(fn):
        return await asyncio.wrap_future(worker.submit(fn))

    # -- errors: one JSON shape ----------------------------------------------------------------

    @app.exception_handler(EgoragError)
    async def egorag_error(request: Request, exc: EgoragError):
        if isinstance(exc, LLMError):  # the answerer's upstream failed, not the request
            return _error(502, f"{exc}; or send \"no_llm\": true for the prompt and evidence without an answer")
        status = 404 if isinstance(exc, NotFoundError) else 403 if isinstance(exc, IndexingDisabled) else 400
        return _error(status, str(exc))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge):
        return _error(413, str(exc))

    @app.exception_handler(BodyTimeout)
    async def too_slow(request: Request, exc: BodyTimeout):
        return _error(408, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return _error(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (BodyTooLarge, BodyTimeout)):  # FastAPI reports a failed body read as 400
            return _error(413 if isinstance(cause, BodyTooLarge) else 408, str(cause))
        if exc.status_code == 404 and exc.detail == "Not Found":
            return _error(404, f"no such route: {request.url.path} (see /docs for the routes)")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        logger.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")

    # -- the page ----------------------------------------------------------------------------

    static = resources.files("egorag.server") / "static"

    @app.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    @app.post("/login", include_in_schema=False)
    async def login(api_key: Annotated[str, Form()]):
        # the guard has checked the key by now (the form field counts as a key on this route)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, api_key, httponly=True, samesite="strict")
        return response

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    # -- routes ------------------------------------------------------------------------------

    @app.get("/health", tags=["store"])
    async def health() -> dict:
        """Liveness and the store's size (the one route without the API key)."""
        listed = await on_engine(engine.videos)
        return {"status": "ok", "db": str(engine.db), "videos": len(listed), "indexing": jobs.busy()}

    @app.get("/videos", tags=["store"])
    async def videos() -> list[dict]:
        """The indexed videos, as ``egorag videos --json`` lists them."""
        return [v.summary() for v in await on_engine(engine.videos)]

    @app.post("/videos", status_code=202, tags=["store"])
    async def index_videos(body: IndexBody) -> dict:
        """Index files or folders under the server's ``--media-root`` as a background job;
        poll ``GET /jobs/{id}``. Searches keep answering meanwhile."""
        return jobs.submit(body.paths, body.reindex).to_dict()

    @app.get("/jobs", tags=["store"])
    async def list_jobs() -> list[dict]:
        return [j.to_dict() for j in jobs.all()]

    @app.get("/jobs/{job_id}", tags=["store"])
    async def job(job_id: str) -> dict:
        try:
            return jobs.get(job_id).to_dict()
        except KeyError:
            raise HTTPException(404, f"{job_id}: no such job (GET /jobs lists them)") from None

    @app.delete("/videos/{video_id}", tags=["store"])
    async def delete_video(video_id: str) -> dict:
        """Delete one video and its scenes from the store."""
        await on_engine(lambda: engine.video(video_id))  # by id only: a path is an unknown id here
        deleted = await on_engine(lambda: engine.delete([video_id]))
        return {"deleted": [v.summary() for v in deleted]}

    @app.get("/videos/{video_id}/media", tags=["store"], response_class=FileResponse)
    async def media(video_id: str):
        """The indexed video file, with HTTP Range requests so a player can seek."""
        video = await on_engine(lambda: engine.video(video_id))
        path = Path(video.path)
        if not path.is_file():
            raise HTTPException(404, f"{video.path}: the indexed file is no longer there (moved or deleted)")
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @app.get("/scenes/{scene_id}", tags=["store"])
    async def scene(scene_id: str) -> dict:
        """One scene: its times, transcript, caption, screen text and moments."""
        s = await on_engine(lambda: engine.scene(scene_id))
        return {"scene_id": s.scene_id, "video_id": s.video_id, "video": s.video_path, "scene": s.scene_index,
                "start": s.start, "end": s.end, "transcript": s.transcript, "caption": s.caption,
                "screen_text": s.screen_text, "audio_events": list(s.audio_events), "speakers": list(s.speakers),
                "moments": [{"time": m.time, "text": m.text, "speaker": m.speaker} for m in s.moments]}

    @app.get("/scenes/{scene_id}/similar", tags=["search"])
    async def similar(scene_id: str, where: QueryFilters, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10) -> dict:
        """More like this scene: the nearest scenes in every modality it has (the scene itself left out)."""
        result = await on_engine(lambda: engine.similar(scene_id, k=k, where=where))
        return result.to_dict()

    @app.get("/scenes/{scene_id}/thumbnail", tags=["store"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}})
    async def thumbnail(scene_id: str):
        """The scene's JPEG thumbnail, made at index time."""
        jpeg = await on_engine(lambda: engine.thumbnail(scene_id))
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/search", tags=["search"])
    async def search_get(where: QueryFilters, q: str | None = None, query: str | None = None, text: str | None = None,
                         k: Annotated[int, Query(ge=1, le=MAX_K)] = 10) -> Response:
        """Search by text: what ``egorag search --json`` prints."""
        return await _search(_text(q, query, text), None, k, where)

    @app.post("/search", tags=["search"])
    async def search_post(body: SearchBody) -> Response:
        """Search by text, a base64 image, or several texts at once (``queries``: answers
        ``{"results": [...]}``)."""
        where = body.where()
        if body.queries is not None:
            texts = body.queries
            if not texts or not all(t.strip() for t in texts):
                raise EgoragError("'queries' must be a non-empty list of non-blank strings")
            if len(texts) > MAX_QUERIES:
                raise HTTPException(413, f"'queries' holds {len(texts)} texts; send at most {MAX_QUERIES} in one request")
            results = await on_engine(lambda: engine.search_many(texts, k=body.k, where=where))
            return _json({"results": [r.to_dict() for r in results]})
        image = None
        if body.image is not None:
            try:
                raw = base64.b64decode(body.image, validate=True)
            except (binascii.Error, ValueError):
                raise EgoragError("'image' is not valid base64") from None
            image = await _image(raw)
        return await _search(_text(body.q, body.query, body.text), image, body.k, where)

    @app.post("/search/image", tags=["search"])
    async def search_image(image: Annotated[UploadFile, File(description="the query image")],
                           q: Annotated[str | None, Form()] = None, k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
                           video: Annotated[list[str] | None, Form()] = None, path: Annotated[str | None, Form()] = None,
                           from_: Annotated[str | None, Form(alias="from")] = None, to: Annotated[str | None, Form()] = None,
                           audio_event: Annotated[list[str] | None, Form()] = None,
                           speaker: Annotated[list[str] | None, Form()] = None) -> Response:
        """Search by an uploaded image (multipart), with an optional text beside it."""
        where = SceneFilter.parse(video, path, from_, to, audio_event, speaker)
        return await _search(_text(q), await _image(await image.read()), k, where)

    @app.post("/classify", tags=["search"])
    async def classify(images: Annotated[list[UploadFile], File(description="images to classify")],
                       labels: Annotated[str, Form(description="the labels, comma-separated or one per line")]) -> dict:
        """Zero-shot classify uploaded images against labels with the visual model."""
        names = [line.strip() for line in labels.replace("\n", ",").split(",") if line.strip()]
        if not names or len(names) > MAX_LABELS:
            raise EgoragError(f"'labels' must name 1 to {MAX_LABELS} labels, comma-separated")
        if len(images) > MAX_IMAGES:
            raise EgoragError(f"send at most {MAX_IMAGES} images in one request")
        await on_engine(engine.check_image_queries)
        files = [io.BytesIO(await f.read()) for f in images]
        try:
            found = await on_engine(lambda: engine.classify_images(files, names, names=[f.filename or "image" for f in images]))
        except MediaError as exc:
            raise EgoragError(f"'images': {exc.reason}") from None
        return {"results": [c.to_dict() for c in found]}

    @app.get("/ask", tags=["ask"])
    async def ask_get(where: QueryFilters, q: str | None = None, question: str | None = None,
                      k: Annotated[int | None, Query(ge=1, le=MAX_K)] = None, no_llm: bool = False) -> Response:
        """Answer a question from the videos, citing scenes: what ``egorag ask --json`` prints."""
        return await _ask(_text(q, question), k, no_llm, where)

    @app.post("/ask", tags=["ask"])
    async def ask_post(body: AskBody) -> Response:
        return await _ask(_text(body.q, body.question), body.k, body.no_llm, body.where())

    async def _search(text: str | None, image, k: int, where: SceneFilter | None) -> Response:
        if text is None and image is None:
            raise EgoragError("search needs a text query ('q') or an image ('image')")
        result = await asyncio.wrap_future(worker.submit_search(SearchRequest(text, image, k, where)))
        return _json(result.to_dict())

    async def _image(raw: bytes):
        from egorag.images import load_image

        await on_engine(engine.check_image_queries)  # before the image is decoded
        try:
            return await run_in_threadpool(load_image, io.BytesIO(raw))
        except MediaError as exc:
            raise EgoragError(f"'image': {exc.reason}") from None

    async def _ask(question: str | None, k: int | None, no_llm: bool, where: SceneFilter | None) -> dict:
        from egorag import answer

        if question is None:
            raise EgoragError("ask needs a question ('q')")
        config = engine.config.answer
        request = SearchRequest(question, None, k or config.k, where)
        hits = (await asyncio.wrap_future(worker.submit_search(request))).hits
        chat = None if no_llm else chat_model()
        # an LLM's answer is awaited off the engine thread, so that searches go on meanwhile
        return _json((await run_in_threadpool(answer, question, hits, chat, config)).to_dict())

    return app


def _json(payload: Any) -> Response:
    """A JSON answer serialised once, by the standard library (FastAPI's own encoder walks every
    value of a search result first: ~1 ms a query)."""
    return Response(json.dumps(payload), media_type="application/json")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _text(*values: str | None) -> str | None:
    for value in values:
        if value is not None:
            return value if value.strip() else None
    return None


FIELD_HINTS = {  # what a field must be, said in place of the validator's wording
    "k": f"an integer from 1 to {MAX_K}",
    "video": "a video id or a list of them",
    "path": "a glob string",
    "from": "seconds, mm:ss or hh:mm:ss",
    "to": "seconds, mm:ss or hh:mm:ss",
    "audio_event": "an audio event tag or a list of them",
    "speaker": "a speaker label or a list of them",
    "queries": f"a non-empty list of non-blank strings (at most {MAX_QUERIES})",
    "image": "a base64-encoded image file",
    "paths": "a list of files or folders under the media root",
}


def _validation_message(exc: RequestValidationError) -> str:
    """The first problem, in one line: which field and what is wrong with it."""
    errors = exc.errors()
    if not errors:
        return "bad request"
    first = errors[0]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return f"the body is not JSON: {first.get('ctx', {}).get('error', 'invalid')}"
    if kind in ("model_attributes_type", "dict_type") and len(first.get("loc", ())) <= 1:
        return "the body must be a JSON object (sent with Content-Type: application/json)"
    where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
    field = where[0] if where else "the body"
    if kind == "extra_forbidden":
        return f"{field!r}: unknown field (see /docs for the fields)"
    if kind == "missing":
        return f"{field!r} is required"
    got = first.get("input")
    shown = "" if got is None or isinstance(got, (dict, list, bytes)) else f", got {str(got)[:40]!r}"
    if field in FIELD_HINTS:
        return f"{field!r} must be {FIELD_HINTS[field]}{shown}"
    message = first.get("msg", "invalid")
    return f"{field!r}: {message[0].lower() + message[1:]}{shown}"
