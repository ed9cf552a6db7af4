"""Index jobs started over HTTP (``POST /videos``): paths confined to the server's media root,
indexed one job at a time on a thread of their own, with progress to poll (``GET /jobs/{id}``).

A job indexes through its own :class:`~egorag.engine.Engine` on the same store, as a second
process would: the store's write lock orders it with any other writer, and the serving engine
follows the new store version as it follows any other writer's, so searches keep answering
while a job runs.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from egorag.errors import EgoragError

logger = logging.getLogger("egorag.server")

MAX_JOBS_KEPT = 100  # finished jobs remembered for GET /jobs


class PathRefused(EgoragError):
    """A path from a request that is not a file or folder under the media root."""


class IndexingDisabled(EgoragError):
    """The server was started without a media root: it indexes nothing."""


def confine(root: Path, given: str) -> Path:
    """``given`` (relative to ``root``, or absolute) resolved, links followed, and required to lie
    under ``root``: ``..``, absolute paths elsewhere and links that lead out are refused."""
    if not isinstance(given, str) or not given.strip() or "\0" in given:
        raise PathRefused("'path' must be a non-empty path under the media root")
    root = root.resolve()
    candidate = Path(given) if Path(given).is_absolute() else root / given
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a loop of links
        raise PathRefused(f"{given}: no such file or folder under the media root") from None
    if resolved != root and root not in resolved.parents:
        raise PathRefused(f"{given}: outside the media root (only files under it can be indexed)")
    return resolved


@dataclass
class IndexJob:
    """One ``POST /videos``: its state is ``queued``, ``running``, ``done`` or ``failed``."""

    id: str
    paths: list[str]
    reindex: bool = False
    state: str = "queued"
    done: int = 0  # videos encoded so far
    total: int | None = None  # videos to encode (known once the files are hashed)
    current: str = ""  # the video being encoded
    report: dict | None = None  # the IndexReport, when done
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "paths": self.paths, "reindex": self.reindex, "state": self.state,
                "done": self.done, "total": self.total, "current": self.current, "report": self.report,
                "error": self.error, "created": self.created, "finished": self.finished}


class IndexJobs:
    """The job queue and the thread that runs it (started with the first job)."""

    def __init__(self, engine, media_root: Path | None):
        self.engine = engine  # the serving engine: jobs index through a sibling of it
        self.media_root = None if media_root is None else Path(media_root).resolve()
        self._jobs: dict[str, IndexJob] = {}
        self._queue: queue.Queue[IndexJob | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._engine = None

    def submit(self, paths: list[str], reindex: bool = False) -> IndexJob:
        if self.media_root is None:
            raise IndexingDisabled("this server indexes nothing: start it with --media-root DIR to index files under DIR")
        if not paths:
            raise PathRefused("'paths' must name at least one file or folder under the media root")
        resolved = [str(confine(self.media_root, p)) for p in paths]
        with self._lock:
            job = IndexJob(f"job-{next(self._ids)}", resolved, reindex)
            self._jobs[job.id] = job
            self._forget_old()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="egorag-index", daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> IndexJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def all(self) -> list[IndexJob]:
        return list(self._jobs.values())

    def busy(self) -> bool:
        return any(j.state in ("queued", "running") for j in self._jobs.values())

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)

    def _forget_old(self) -> None:
        ended = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        for job in ended[: max(0, len(ended) - MAX_JOBS_KEPT)]:
            del self._jobs[job.id]

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            job.state = "running"
            try:
                report = self._index(job)
                job.report, job.state = report.to_dict(), "done"
            except EgoragError as exc:
                job.error, job.state = str(exc), "failed"
            except Exception as exc:  # a bug: the job fails, the server goes on
                logger.exception("index job %s failed", job.id)
                job.error, job.state = f"internal error ({type(exc).__name__}); the server's log has the details", "failed"
            job.current, job.finished = "", time.time()

    def _index(self, job: IndexJob):
        from egorag.ingest.decode import find_videos

        files = [f for f in find_videos(job.paths) if self._inside(f)]
        if self._engine is None:
            self._engine = self.engine.sibling()

        def progress(done: int, total: int, path: str) -> None:
            job.done, job.total, job.current = done, total, path

        return self._engine.index(files, reindex=job.reindex, on_bad_media="skip", on_video=progress)

    def _inside(self, path: Path) -> bool:
        """A file found by walking a folder may be a link that leads out of the media root."""
        resolved = path.resolve()
        if self.media_root in resolved.parents:
            return True
        logger.warning("%s: skipped, it leads outside the media root", path)
        return False
