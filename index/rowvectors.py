"""Row-ordered float32 copies of one modality's vectors, beside the FAISS indexes.

Row ``r`` holds catalog row ``r``'s vector (zeros where the scene has none), so re-scoring
candidates, drawing calibration samples, scoring a filter's few rows exactly and rebuilding an
index are array indexing; the IVF indexes themselves keep only 8-bit codes. Float32, not
float16: numpy converts float16 at ~3.4 ns per value here, which made gathering a query's
candidates 10x slower than the gather itself. Persisted as a raw little-endian file,
memory-mapped on open; rows are only ever appended, so a reader that mapped the first ``n`` rows
keeps a consistent view while a writer grows the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DTYPE = np.dtype("<f4")


class RowVectors:
    """An ``(n, dim)`` matrix (float32 unless told), in memory or memory-mapped from ``path``."""

    def __init__(self, dim: int, path: Path | None = None, dtype: np.dtype = DTYPE):
        self.dim = dim
        self.path = path
        self.dtype = np.dtype(dtype)
        self.data: np.ndarray = np.zeros((0, dim), self.dtype)

    def __len__(self) -> int:
        return len(self.data)

    @classmethod
    def open(cls, path: Path, dim: int, n: int, dtype: np.dtype = DTYPE) -> RowVectors | None:
        """Map the first ``n`` rows of ``path``; None when the file is missing or shorter
        (a store written before these files existed: the caller refills them)."""
        out = cls(dim, path, dtype)
        if not path.exists() or path.stat().st_size < n * dim * out.dtype.itemsize:
            return None
        if n:
            out.data = np.memmap(path, out.dtype, mode="r", shape=(n, dim))
        return out

    def resize(self, n: int) -> None:
        """Grow to ``n`` rows; new rows are zeros until written."""
        if n == len(self):
            return
        if self.path is None:
            grown = np.zeros((n, self.dim), self.dtype)
            grown[: min(n, len(self))] = self.data[:n]
            self.data = grown
            return
        self.flush()
        self.data = np.zeros((0, self.dim), self.dtype)  # drop the old map before resizing the file
        with open(self.path, "ab") as f:
            f.truncate(n * self.dim * self.dtype.itemsize)  # zero-filled; stale rows past a crash dropped
        if n:
            self.data = np.memmap(self.path, self.dtype, mode="r+", shape=(n, self.dim))

    def write(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Fill rows added by :meth:`resize` (written rows are never rewritten)."""
        if len(rows):
            self.data[rows] = vectors

    def flush(self) -> None:
        if isinstance(self.data, np.memmap) and self.data.flags.writeable:
            self.data.flush()

    def take(self, rows) -> np.ndarray:
        """The vectors of ``rows`` (sorted access is faster on a cold file)."""
        return np.asarray(self.data[np.asarray(rows, dtype=np.int64)])
