"""Encoding side by side (``[ingest] workers``): up to that many videos in flight, and their
speech recognised on as many threads, window by window.

Speech recognition is most of ingest's compute, and CTranslate2 releases the GIL while it runs;
whisper tiny.en gains nothing from a second thread inside one call on two cores, but two calls
side by side finish in half the time. So the unit of parallel work is one audio window
(``[asr] window_s``): a long video keeps every worker busy on its own, short videos keep them
busy by being encoded together. The decode pass, captions and embeddings of the videos in flight
run on their own threads beside it. Results come back in the order the videos were given, so the
caller writes (and commits) them one by one.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
_END = object()  # no more windows


class Cancelled(Exception):
    """Raised in a worker's task once the run was given up (an error or Ctrl-C on the caller)."""


class StopWhenCancelled:
    """A frame consumer of the decode pass that ends it once ``cancelled`` is set."""

    def __init__(self, cancelled: threading.Event):
        self.cancelled = cancelled

    def consume(self, index: int, time: float, frame) -> None:
        if self.cancelled.is_set():
            raise Cancelled("indexing was given up")


class Workers:
    """Two thread pools of ``n`` threads: ``videos`` encodes whole videos, ``windows`` runs the
    speech recogniser on audio windows (a model loaded with ``n`` replicas). At most ``2 n``
    decoded windows wait or run at once, whatever the number of videos feeding them (a 5-minute
    window is 19 MB of audio). Leaving it normally waits for what runs; leaving it on an error
    (or Ctrl-C) sets ``cancelled``, drops what has not started and does not wait: the decode pass
    (:class:`StopWhenCancelled`) and :meth:`map_windows` stop at their next frame or window."""

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"workers must be at least 1, got {n}")
        self.n = n
        self.videos = ThreadPoolExecutor(n, thread_name_prefix="egorag-video")
        self.windows = ThreadPoolExecutor(n, thread_name_prefix="egorag-asr")
        self._slots = threading.BoundedSemaphore(2 * n)
        self.cancelled = threading.Event()

    def map_windows(self, fn: Callable[..., R], items: Iterator[tuple]) -> list[R]:
        """``fn(*item)`` for each item on the recogniser threads, in order. The next item is drawn
        from ``items`` (decoded) only when there is room for it. If drawing one raises, the
        windows already running finish before the error goes up."""
        futures: list[Future] = []
        try:
            for item in self._drawn(items):
                future = self.windows.submit(fn, *item)
                future.add_done_callback(lambda _: self._slots.release())
                futures.append(future)
        except BaseException:
            wait(futures)
            raise
        return [f.result() for f in futures]

    def _drawn(self, items: Iterator[tuple]) -> Iterator[tuple]:
        """``items``, each drawn once there is room for one more window (its room taken: the
        caller's future gives it back); the room is given back at once when there is no item."""
        while True:
            self._slots.acquire()
            try:
                if self.cancelled.is_set():
                    raise Cancelled("indexing was given up")
                item = next(items, _END)
            except BaseException:  # a decode error, or given up
                self._slots.release()
                raise
            if item is _END:
                self._slots.release()
                return
            yield item

    def in_order(self, items: Iterable[T], work: Callable[[T], R], start: Callable[[T], bool] | None = None
                 ) -> Iterator[tuple[T, Future]]:
        """``work(item)`` on the video threads, at most ``n`` at once; yields each item with its
        future in the order given, the next item started as one is handed out. ``start(item)``,
        called on this thread just before an item would start, may skip it (False)."""
        pending: deque[tuple[T, Future]] = deque()
        for item in items:
            if start is not None and not start(item):
                continue
            pending.append((item, self.videos.submit(work, item)))
            if len(pending) >= self.n:
                yield pending.popleft()
        while pending:
            yield pending.popleft()

    def close(self, wait: bool = True) -> None:
        if not wait:
            self.cancelled.set()
        self.videos.shutdown(wait=wait, cancel_futures=True)
        self.windows.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(wait=exc_type is None)
