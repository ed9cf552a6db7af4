"""How index/ writes: each file atomically, one writer at a time per store, LanceDB commits
retried when they lose a race, and the search files under a manifest that says what each one
must be.

Two processes writing one store is normal use: two ``egorag index`` runs, an indexer beside a
server that keeps its search files in step. Every section that commits to the store or rewrites
its search files holds :func:`store_lock`: an exclusive ``fcntl.flock`` on ``<db>/write.lock``.
The kernel drops it when its holder dies, so a killed writer never leaves a store locked. Within
one process it is reentrant (a thread holding it may take it again), and threads queue on it.

The search files (``<db>/faiss/``) are derived from the store; :func:`write_manifest`, called
last by their writer, records each one's size, modification time and blake2b checksum, with the
store versions they were built from. :func:`check_manifest` is what a reader trusts: a file
missing, of another size, or changed since (its time differs) whose checksum no longer matches
makes the whole set invalid, and it is rebuilt from the store; checksums decide, not the
exceptions a damaged file would raise. ``full`` re-hashes every file (``egorag check``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from egorag.errors import EgoragError, StoreDamagedError

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
def store_lock(db: str | Path, wait: bool = True) -> Iterator[bool]:
    """Hold the store's write lock for the block, waiting for another writer if there is one;
    with ``wait=False`` the block runs at once and is told whether it holds the lock (False:
    another thread or process does; the caller does without)."""
    path = os.path.abspath(Path(db) / LOCK_NAME)
    with _holders_lock:
        holder = _holders.setdefault(path, _Holder(threading.RLock()))
    if not holder.thread_lock.acquire(blocking=wait):
        yield False
        return
    try:
        if holder.depth == 0:
            holder.fd = _acquire(path, wait)
            if holder.fd is None:
                yield False
                return
        holder.depth += 1
        try:
            yield True
        finally:
            holder.depth -= 1
            if holder.depth == 0:
                fd, holder.fd = holder.fd, None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
    finally:
        holder.thread_lock.release()


def _acquire(path: str, wait: bool = True) -> int | None:
    """The locked file's descriptor; None when ``wait`` is False and another process holds it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + WAIT_LOG_S
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    return None
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


MANIFEST = "manifest.json"
UNLISTED = ("kept", LOCK_NAME, MANIFEST)  # written outside the manifest (see index.kept)


def digest(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _listed(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.relative_to(root).parts[0] not in UNLISTED
    )


def write_manifest(root: Path, versions: dict[str, int], previous: dict | None) -> dict:
    """Record every search file under ``root`` (a file unchanged since ``previous``, by size and
    time, keeps its checksum) and the store ``versions`` they describe. Returns the manifest."""
    known = (previous or {}).get("files", {})
    files = {}
    for path in _listed(root):
        st = path.stat()
        name = path.relative_to(root).as_posix()
        old = known.get(name)
        same = old is not None and old["size"] == st.st_size and old["mtime_ns"] == st.st_mtime_ns
        files[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "blake2b": old["blake2b"] if same else digest(path)}
    manifest = {"versions": versions, "files": files}
    with atomic_path(root / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest))
    return manifest


def read_manifest(root: Path) -> dict | None:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def check_manifest(root: Path, manifest: dict, full: bool = False) -> str | None:
    """What is wrong with the search files under ``root`` against ``manifest`` (one line
    naming the file), or None when every listed file is as recorded."""
    for name, want in sorted(manifest["files"].items()):
        path = root / name
        try:
            st = path.stat()
        except OSError:
            return f"{path} is missing"
        if st.st_size != want["size"]:
            return f"{path} has {st.st_size} bytes, not the {want['size']} written"
        if (full or st.st_mtime_ns != want["mtime_ns"]) and digest(path) != want["blake2b"]:
            return f"{path} has changed since it was written (checksum mismatch)"
    return None


#: What LanceDB says of a commit that lost a race with another writer and may be tried again.
RETRYABLE = ("Retryable commit conflict", "Commit conflict", "too much write contention")
COMMIT_ATTEMPTS = 8
T = TypeVar("T")


def commit(uri: str, action: Callable[[], T], attempts: int = COMMIT_ATTEMPTS) -> T:
    """Run one LanceDB commit, retrying its retryable conflicts with a growing pause (another
    program committing to the same table); a conflict that persists is an :class:`EgoragError`,
    and any other failure of LanceDB a :class:`StoreDamagedError` (damaged or missing files)."""
    for attempt in range(attempts):
        try:
            return action()
        except (RuntimeError, OSError, ValueError, RecursionError) as exc:
            if not any(s in str(exc) for s in RETRYABLE):
                raise StoreDamagedError(f"{uri}: LanceDB could not write the store ({first_line(exc)}); "
                                        "run `egorag check` on it") from exc
            if attempt + 1 == attempts:
                raise EgoragError(
                    f"{uri}: another process kept writing the store at the same time ({first_line(exc)}); run the command again"
                ) from exc
            time.sleep(0.05 * 2**attempt * (1 + random.random()))
    raise ValueError(f"attempts must be at least 1, got {attempts}")


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
