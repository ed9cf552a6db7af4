"""The server's engine thread: one thread owns the :class:`~egorag.engine.Engine`, and text
searches that wait together are answered in one :meth:`Engine.search_many` call.

Why one thread: the engine and its retriever keep per-process caches (store versions, the video
level, the accelerator's mapped files) that are not made for concurrent callers, and on a 2-core
machine two queries at once only contend for the same cores and memory bandwidth. Why
coalescing: a batch of text queries shares the text encoder's forward pass and the fused
sketch's scan (FAISS reads each block of codes once for the whole batch), so under load the
server answers more queries per second, and a lone query waits for nothing: there is no timer,
a batch is whatever arrived while the previous one ran.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from egorag import SceneFilter

logger = logging.getLogger("egorag.server")

MAX_BATCH = 32  # queries per search_many call (the batched figures in benchmarks/RESULTS.md)


@dataclass(frozen=True)
class SearchRequest:
    """One search as the server received it (``image`` is a PIL image or None)."""

    text: str | None = None
    image: Any = None
    k: int = 10
    where: SceneFilter | None = None


@dataclass
class _Job:
    future: Future
    search: SearchRequest | None = None
    call: Callable[[], Any] | None = None


_STOP = object()


class EngineWorker:
    """Runs every engine call on its own thread; :meth:`search` and :meth:`call` block the
    calling (HTTP handler) thread until the answer is ready."""

    def __init__(self, engine, max_batch: int = MAX_BATCH):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.engine = engine
        self.max_batch = max_batch
        self.batches: list[int] = []  # sizes of the search_many calls made (for the benchmark)
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="egorag-engine", daemon=True)
        self._thread.start()

    def search(self, request: SearchRequest):
        """The engine's :class:`~egorag.hits.SearchResult` for ``request``."""
        return self.submit_search(request).result()

    def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on the engine thread (for anything that touches the engine)."""
        return self.submit(fn).result()

    def submit_search(self, request: SearchRequest) -> Future:
        """:meth:`search` without waiting: the future of its result."""
        return self._submit(_Job(Future(), search=request))

    def submit(self, fn: Callable[[], Any]) -> Future:
        """:meth:`call` without waiting: the future of ``fn()``."""
        return self._submit(_Job(Future(), call=fn))

    def close(self) -> None:
        self._jobs.put(_STOP)
        self._thread.join()

    def _submit(self, job: _Job) -> Future:
        if not self._thread.is_alive():
            raise RuntimeError("the engine thread has stopped")
        self._jobs.put(job)
        return job.future

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            jobs = [first]
            while len(jobs) < self.max_batch:  # whatever else is already waiting
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    self._jobs.put(_STOP)
                    break
                jobs.append(job)
            try:
                self._answer(jobs)
            except Exception as exc:  # a bug here must not leave the waiting requests hanging
                logger.exception("the engine thread failed to answer %d requests", len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _answer(self, jobs: list[_Job]) -> None:
        groups: dict[tuple, list[_Job]] = {}
        for job in jobs:
            if job.call is not None:
                _settle(job.future, job.call)
            elif job.search.image is None and job.search.text:
                groups.setdefault((job.search.k, job.search.where), []).append(job)
            else:  # image queries go one by one
                self._search_one(job)
        for (k, where), group in groups.items():
            if len(group) == 1:
                self._search_one(group[0])
                continue
            self.batches.append(len(group))
            try:
                results = self.engine.search_many([job.search.text for job in group], k=k, where=where)
            except Exception:  # one bad query must not fail the others: answer them one by one
                logger.debug("batch of %d failed; answering its queries one by one", len(group), exc_info=True)
                for job in group:
                    self._search_one(job)
                continue
            for job, result in zip(group, results):
                job.future.set_result(result)

    def _search_one(self, job: _Job) -> None:
        r = job.search
        _settle(job.future, lambda: self.engine.search(r.text, image=r.image, k=r.k, where=r.where))


def _settle(future: Future, fn: Callable[[], Any]) -> None:
    """Run ``fn`` and hand its result, or the exception it raised, to whoever waits on ``future``."""
    try:
        future.set_result(fn())
    except BaseException as exc:  # noqa: BLE001 - re-raised in the waiting thread by Future.result()
        future.set_exception(exc)
