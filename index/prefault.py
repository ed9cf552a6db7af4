"""Warming the page tables of memory-mapped arrays, in the background.

A fresh process that maps a file pays a page fault the first time it touches each page, even
when the file sits in the page cache. A query touches a few thousand scattered rows of the row
copies and sketch codes, so a newly opened store answers slowly until its process has touched
most pages. Measured on the 1M-scene benchmark store, the same 200 queries: ~400 faults per query
in a fresh process, at 25.7 ms p50, against none and 18.0 ms once the pages were mapped.

``MADV_POPULATE_READ`` (Linux 5.14+) maps a range's pages in one call, reading from disk the
ones not cached: 0.2 s for a 2 GB file already in the page cache here. It is called through
ctypes, which releases the GIL, so queries run meanwhile. Elsewhere (another OS, an older
kernel) nothing is warmed and pages are mapped as they are touched, as before.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import sys
import threading
import time
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger("egorag")

MADV_POPULATE_READ = 22  # linux/mman.h, Linux 5.14
CHUNK = 64 << 20  # bytes per call
BUDGET = 0.5  # at most this share of the available memory is warmed


def mapped(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The memory-mapped arrays among ``arrays``, each once."""
    out, seen = [], set()
    for a in arrays:
        if isinstance(a, np.memmap) and a.nbytes and id(a) not in seen:
            seen.add(id(a))
            out.append(a)
    return out


def available_bytes() -> int | None:
    """The kernel's estimate of memory available without swapping (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def warm(arrays: Sequence[np.ndarray], budget: float = BUDGET) -> threading.Thread | None:
    """Map the pages of the memory-mapped ``arrays`` in a daemon thread, in the order given,
    while their total stays under ``budget`` of the available memory (more would only evict
    pages it had just mapped). Returns the thread (join it to wait), or None when there is
    nothing to warm or the platform cannot."""
    if not sys.platform.startswith("linux"):
        return None
    limit = (available_bytes() or 0) * budget
    chosen, total = [], 0
    for a in mapped(arrays):
        if total + a.nbytes > limit:
            logger.debug("warm: %d MB more would pass %.0f%% of the available memory; left cold", a.nbytes >> 20, budget * 100)
            break
        chosen.append(a)
        total += a.nbytes
    if not chosen:
        return None
    thread = threading.Thread(target=_populate, args=(chosen,), name="egorag-warm", daemon=True)
    thread.start()
    return thread


def _populate(arrays: list[np.ndarray]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE
    t0, done = time.perf_counter(), 0
    for a in arrays:
        start = a.ctypes.data & ~(page - 1)  # the mapping starts on a page; the data may not
        end = a.ctypes.data + a.nbytes
        for at in range(start, end, CHUNK):
            if libc.madvise(at, min(CHUNK, end - at), MADV_POPULATE_READ) != 0:
                errno = ctypes.get_errno()
                logger.debug("warm: madvise failed (errno %d); pages stay mapped on first touch", errno)
                return
        done += a.nbytes
    logger.debug("warm: mapped %d MB in %.2f s", done >> 20, time.perf_counter() - t0)
