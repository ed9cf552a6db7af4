"""Warming the page tables of memory-mapped arrays, in the background.

A fresh process that maps a file pays a page fault the first time it touches each page, even
when the file sits in the page cache. A query touches a few thousand scattered rows of the row
copies and sketch codes, so a newly opened store answers slowly until its process has touched
most pages. Measured on the 1M-scene benchmark store, the same 200 queries: ~400 faults per query
in a fresh process, at 25.7 ms p50, against none and 18.0 ms once the pages were mapped.

The FAISS accelerator starts this once its process has answered a query: started at the open,
it slowed the first answer (with another process holding 12 GB, a fresh 1M process's first query
took 1.2-1.6 s instead of 0.5-0.8 s, even with the passes below). Two passes, in a daemon thread
at the lowest CPU priority:

1. the pages already in the page cache (``mincore``) are mapped with ``MADV_POPULATE_READ``
   (Linux 5.14+): no disk reads, 0.2 s for a 2 GB file here;
2. the others are read from disk only while they fit in half of the *free* memory. Reading more
   would evict cached pages, perhaps the ones the first queries need: with the 1M store's files
   partly evicted by another process holding 12 GB, reading them all made a fresh process's first
   query take 6.7 s instead of 0.8 s.

The calls go through ctypes, which releases the GIL, so queries run meanwhile. Elsewhere (another
OS, an older kernel) nothing is warmed and pages are mapped as they are touched, as before.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import sys
import threading
import time
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger("egorag")

MADV_POPULATE_READ = 22  # linux/mman.h, Linux 5.14
CHUNK = 64 << 20  # bytes per call
BUDGET = 0.5  # at most this share of the free memory is read from disk


def mapped(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The memory-mapped arrays among ``arrays`` (an ``np.memmap``, or a plain view of one),
    each once."""
    out, seen = [], set()
    for a in arrays:
        source = a
        while isinstance(source, np.ndarray) and not isinstance(source, np.memmap):
            source = source.base
        if isinstance(source, np.memmap) and a.nbytes and id(source) not in seen:
            seen.add(id(source))
            out.append(a)
    return out


def free_bytes() -> int | None:
    """Memory the kernel has not given to anything, the page cache included (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemFree:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def warm(arrays: Sequence[np.ndarray], budget: float = BUDGET) -> threading.Thread | None:
    """Map the pages of the memory-mapped ``arrays`` in a daemon thread, in the order given:
    those in the page cache, then others read from disk within ``budget`` of the free memory.
    Returns the thread (join it to wait), or None when there is nothing to warm or the platform
    cannot."""
    chosen = mapped(arrays)
    if not sys.platform.startswith("linux") or not chosen:
        return None
    thread = threading.Thread(target=_populate, args=(chosen, (free_bytes() or 0) * budget), name="egorag-warm", daemon=True)
    thread.start()
    return thread


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return libc


def _span(a: np.ndarray) -> tuple[int, int]:
    """The page-aligned start and the end of ``a``'s bytes (a mapping starts on a page; the data may not)."""
    return a.ctypes.data & ~(mmap.PAGESIZE - 1), a.ctypes.data + a.nbytes


def _mincore(libc, at: int, length: int) -> np.ndarray | None:
    """Whether each page from ``at`` on is in the page cache (None where ``mincore`` fails)."""
    vec = np.zeros(-(-length // mmap.PAGESIZE), np.uint8)
    if libc.mincore(at, length, vec.ctypes.data) != 0:
        return None
    return (vec & 1).astype(bool)


def resident(a: np.ndarray) -> np.ndarray | None:
    """Whether each page of ``a`` is in the page cache (None where ``mincore`` fails)."""
    start, end = _span(a)
    return _mincore(_libc(), start, end - start)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, count) of each run of True in ``flags``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), (edges[1::2] - edges[::2]).tolist()))


def _populate(arrays: list[np.ndarray], disk_budget: float) -> None:
    try:  # the lowest CPU priority (Linux: per thread): queries first
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError as exc:
        logger.debug("warm: at normal priority (%s)", exc)
    libc, page = _libc(), mmap.PAGESIZE
    t0, cached, missing = time.perf_counter(), 0, []
    for a in arrays:
        start, end = _span(a)
        for at in range(start, end, CHUNK):
            length = min(CHUNK, end - at)
            here = _mincore(libc, at, length)
            if here is None:
                logger.debug("warm: mincore failed (errno %d); pages stay mapped on first touch", ctypes.get_errno())
                return
            for first, count in _runs(here):
                if libc.madvise(at + first * page, count * page, MADV_POPULATE_READ) != 0:
                    logger.debug("warm: madvise failed (errno %d); pages stay mapped on first touch", ctypes.get_errno())
                    return
                cached += count * page
            missing += [(at + first * page, count * page) for first, count in _runs(~here)]
    read = 0
    for at, length in missing:  # in the order given: most read per byte first
        if read + length > disk_budget:
            logger.debug("warm: %d MB more from disk would pass half of the free memory; left cold", length >> 20)
            break
        if libc.madvise(at, length, MADV_POPULATE_READ) != 0:
            logger.debug("warm: madvise failed (errno %d) reading from disk; the rest stays cold", ctypes.get_errno())
            break
        read += length
    logger.debug("warm: mapped %d MB cached and %d MB from disk in %.2f s", cached >> 20, read >> 20, time.perf_counter() - t0)
