"""The search snapshots on disk: their layout, their manifest, atomic writes, and the store lock.

Everything a query needs besides LanceDB lives in one directory per snapshot::

    <db>/snapshots/000000000042/      one snapshot (its generation, zero-padded)
        manifest.json                 written last: every file, its size and checksum, the
                                      LanceDB versions and encoder fingerprints it was built from
        catalog.parquet, videos.arrow, derived.arrow, <modality>.faiss, <modality>.f32,
        keyframes.f32, texts-<row>.arrow, bm25-<row>.arrow, sketch.arrow, sketch.faiss, sketch-*.u8
    <db>/snapshots/.stage-<pid>-<id>/ a snapshot being built (never read)
    <db>/write.lock                   held by whoever commits to LanceDB or builds a snapshot

A writer stages the next snapshot beside the newest: hard links to the files it keeps, new files
for what changed, then the manifest, then one rename publishes it. Files are immutable except the
row-ordered copies (``*.f32``, ``sketch-*.u8``), which only grow: a manifest records the length it
covers (``grows``), and a reader maps that prefix only, so a later snapshot appending to the same
inode never changes what an earlier one sees. Readers open the newest published snapshot and map
every file at once; a published snapshot is removed once two newer ones exist (a process that
already opened it keeps its mappings).

Checksums decide whether a snapshot may be used: a file missing, shorter than listed, or changed
since (its modification time differs) whose blake2b no longer matches makes the snapshot invalid.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

logger = logging.getLogger("egorag")

LOCK_NAME = "write.lock"
SNAPSHOTS = "snapshots"
MANIFEST = "manifest.json"
GROWS = (".f32", ".u8")  # row-ordered copies: appended in place, mapped up to the listed length
KEEP = 2  # published snapshots kept; older ones are removed by the next writer
STAGE_PREFIX = ".stage-"
WAIT_LOG_S = 2.0  # a writer that waits longer than this says whom it waits for


# -- the store lock ---------------------------------------------------------------------------

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
    """Hold the store's write lock (an exclusive ``fcntl.flock`` on ``<db>/write.lock``, dropped
    by the kernel when its holder dies; reentrant within a process) for the block, waiting for
    another writer if there is one; with ``wait=False`` the block runs at once and is told
    whether it holds the lock."""
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


# -- atomic files -----------------------------------------------------------------------------

@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, unique to this process and call, that replaces ``path``
    when the block completes (a new inode: hard links to the old file keep the old content).
    If the block raises, the temporary path is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(path: Path, table: pa.Table) -> None:
    """An Arrow IPC file, atomically."""
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=65536)


def read_table(path: Path) -> pa.Table:
    """An Arrow IPC file, memory-mapped (nothing is copied)."""
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Named numpy arrays as one Arrow IPC file: one row per array (name, dtype, shape, bytes)."""
    names = sorted(arrays)
    values = [np.asarray(arrays[n]) for n in names]  # tobytes() is C order
    write_table(path, pa.table({
        "name": pa.array(names, pa.string()),
        "dtype": pa.array([v.dtype.str for v in values], pa.string()),
        "shape": pa.array([list(v.shape) for v in values], pa.list_(pa.int64())),
        "data": pa.array([v.tobytes() for v in values], pa.large_binary()),
    }))


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """What :func:`write_arrays` wrote, as read-only views of the mapped file."""
    table = read_table(path)
    data = table.column("data").combine_chunks()
    out = {}
    for i, (name, dtype, shape) in enumerate(zip(*(table.column(c).to_pylist() for c in ("name", "dtype", "shape")))):
        out[name] = np.frombuffer(data[i].as_buffer(), np.dtype(dtype)).reshape(tuple(shape))
    return out


# -- the manifest -----------------------------------------------------------------------------

def digest(path: Path, size: int | None = None, chunk: int = 1 << 22) -> str:
    """blake2b of the file's first ``size`` bytes (all of it when None)."""
    h = hashlib.blake2b(digest_size=16)
    left = size if size is not None else -1
    with open(path, "rb") as f:
        while left != 0 and (block := f.read(chunk if left < 0 else min(chunk, left))):
            h.update(block)
            left -= len(block) if left > 0 else 0
    return h.hexdigest()


def list_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != MANIFEST)


def write_manifest(root: Path, info: Mapping, previous: Mapping | None = None, sizes: Mapping[str, int] | None = None) -> dict:
    """Record every file in ``root`` (size, time, checksum; a file unchanged since ``previous``
    keeps its checksum) and ``info`` (versions, fingerprints, ...). ``sizes``: the length a
    growing file covers, when less than its size. Written last, atomically."""
    known = (previous or {}).get("files", {})
    files = {}
    for name in list_files(root):
        st = (root / name).stat()
        size = (sizes or {}).get(name, st.st_size)
        old = known.get(name)
        same = old is not None and old["size"] == size and old["mtime_ns"] == st.st_mtime_ns
        files[name] = {"size": size, "mtime_ns": st.st_mtime_ns, "blake2b": old["blake2b"] if same else digest(root / name, size)}
    manifest = {**info, "files": files}
    body = json.dumps(manifest, sort_keys=True)
    with atomic_path(root / MANIFEST) as tmp:
        tmp.write_text(json.dumps({"blake2b": _hash(body), "manifest": manifest}, sort_keys=True))
    return manifest


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def read_manifest(root: Path) -> dict | None:
    """The snapshot's manifest; None when it is missing or fails its own checksum."""
    try:
        outer = json.loads((root / MANIFEST).read_text())
        manifest = outer["manifest"]
        if outer["blake2b"] != _hash(json.dumps(manifest, sort_keys=True)):
            return None
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def check_manifest(root: Path, manifest: Mapping, full: bool = False, only: str | None = None) -> str | None:
    """What is wrong with the files of the snapshot ``root`` (one line naming the file), or None
    when every listed file is as recorded. ``full`` re-hashes every file (``egorag check``);
    ``only`` checks that one file (a file not listed is wrong)."""
    listed = manifest["files"] if only is None else {only: manifest["files"].get(only)}
    for name, want in sorted(listed.items()):
        if want is None:
            return f"{root / name} is not in its manifest"
        path = root / name
        try:
            st = path.stat()
        except OSError:
            return f"{path} is missing"
        grows = name.endswith(GROWS)
        if st.st_size < want["size"] or (st.st_size != want["size"] and not grows):
            return f"{path} has {st.st_size} bytes, not the {want['size']} written"
        if (full or st.st_mtime_ns != want["mtime_ns"]) and digest(path, want["size"]) != want["blake2b"]:
            return f"{path} has changed since it was written (checksum mismatch)"
    return None


# -- snapshots --------------------------------------------------------------------------------

def snapshots_dir(db: str | Path) -> Path:
    return Path(db) / SNAPSHOTS


def published(db: str | Path) -> list[tuple[int, Path]]:
    """The published snapshots, oldest first: (generation, directory)."""
    try:
        names = os.listdir(snapshots_dir(db))
    except FileNotFoundError:
        return []
    return sorted((int(n), snapshots_dir(db) / n) for n in names if n.isdigit())


def newest(db: str | Path) -> tuple[int, Path] | None:
    found = published(db)
    return found[-1] if found else None


def stage(db: str | Path, previous: Path | None) -> Path:
    """A new staging directory holding hard links to ``previous``'s files (its manifest aside)."""
    root = snapshots_dir(db)
    root.mkdir(parents=True, exist_ok=True)
    out = root / f"{STAGE_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    if previous is not None:
        for name in list_files(previous):
            os.link(previous / name, out / name)
    return out


def publish(db: str | Path, staged: Path) -> tuple[int, Path]:
    """Rename a staged snapshot to the next generation (the caller holds the store lock)."""
    last = newest(db)
    generation = (last[0] + 1) if last else 1
    target = snapshots_dir(db) / f"{generation:012d}"
    os.rename(staged, target)
    return generation, target


def collect(db: str | Path, keep: int = KEEP) -> None:
    """Remove all but the ``keep`` newest published snapshots, and stages left by dead writers
    (the caller holds the store lock, so no stage of a live writer of this store exists)."""
    for _, path in published(db)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    root = snapshots_dir(db)
    for path in root.glob(f"{STAGE_PREFIX}*") if root.exists() else ():
        shutil.rmtree(path, ignore_errors=True)


# -- LanceDB's versions, read from its directory without importing it ------------------------

TABLES = ("scenes", "videos")


def lance_versions(db: str | Path) -> dict[str, int] | None:
    """Each LanceDB table's newest version, from the manifest names in its ``_versions``
    directory (every commit adds one; LanceDB names version ``v`` either ``v.manifest`` or,
    inverted so that the newest sorts first, ``(2**64 - 1 - v).manifest``). None when a table
    is missing."""
    def version(name: str) -> int:
        n = int(name.partition(".")[0])
        return 2**64 - 1 - n if n > 2**63 else n

    out = {}
    for table in TABLES:
        try:
            names = os.listdir(Path(db) / f"{table}.lance" / "_versions")
        except FileNotFoundError:
            return None
        out[table] = max((version(n) for n in names if n.endswith(".manifest")), default=0)
    return out
