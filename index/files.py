"""How index/ writes files: each one atomically, and one writer at a time per store.

Two processes writing one store is normal use: two ``egorag index`` runs, an indexer beside a
server that keeps its search files in step. Every section that commits to the store or rewrites
its search files holds :func:`store_lock`: an exclusive ``fcntl.flock`` on ``<db>/write.lock``.
The kernel drops it when its holder dies, so a killed writer never leaves a store locked. Within
one process it is reentrant (a thread holding it may take it again), and threads queue on it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("egorag")

LOCK_NAME = "write.lock"
WAIT_LOG_S = 2.0  # a writer that waits longer than this says whom it waits for


@dataclass
class _Holder:
    """This process's hold on one lock file: its thread lock, how deep, and the locked fd."""

    thread_lock: threading.RLock
    depth: int = 0
    fd: int | None = None


_holders: dict[str, _Holder] = {}
_holders_lock = threading.Lock()


@contextmanager
def store_lock(db: str | Path) -> Iterator[None]:
    """Hold the store's write lock for the block (waiting for another writer if there is one)."""
    path = os.path.abspath(Path(db) / LOCK_NAME)
    with _holders_lock:
        holder = _holders.setdefault(path, _Holder(threading.RLock()))
    with holder.thread_lock:
        if holder.depth == 0:
            holder.fd = _acquire(path)
        holder.depth += 1
        try:
            yield
        finally:
            holder.depth -= 1
            if holder.depth == 0:
                fd, holder.fd = holder.fd, None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _acquire(path: str) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + WAIT_LOG_S
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    logger.info("waiting for another process writing %s", os.path.dirname(path))
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    return fd
                time.sleep(0.01)
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, unique to this process and call, that replaces ``path``
    when the block completes (a file in one rename; a folder after the old one is removed).
    If the block raises, the temporary path is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
