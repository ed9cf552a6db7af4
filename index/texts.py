"""Each catalog row's transcript and caption, for the final hits, without a LanceDB query.

A LanceDB point lookup of ten scene ids costs ~10 ms (query planning and an async round trip),
as much as the rest of a fused query. Here the texts live beside the FAISS indexes in Arrow IPC
segments, one per batch of added videos (``texts-<first row>.arrow``), memory-mapped on open:
fetching a hit's text is an Arrow take on a mapped file. Segments are immutable; past
``MAX_SEGMENTS`` they are merged into one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

COLUMNS = ("transcript", "caption")
MAX_SEGMENTS = 16
SCHEMA = pa.schema([(c, pa.string()) for c in COLUMNS])


class SceneTexts:
    def __init__(self, root: Path | None = None):
        self.root = root  # None: in memory only
        self.starts: list[int] = []
        self.tables: list[pa.Table] = []

    def __len__(self) -> int:
        return self.starts[-1] + self.tables[-1].num_rows if self.tables else 0

    @classmethod
    def open(cls, root: Path, n: int) -> SceneTexts | None:
        """Map the segments covering exactly rows ``[0, n)``; None when they do not (a store
        indexed before these files existed, or an interrupted merge: the caller refills them).
        Segments starting past ``n`` are leftovers of an interrupted write and are removed."""
        out = cls(root)
        found = sorted((int(p.stem.partition("-")[2]), p) for p in root.glob("texts-*.arrow") if p.stem.partition("-")[2].isdigit())
        for start, path in found:
            if start >= n:
                path.unlink(missing_ok=True)
                continue
            if start < len(out):
                continue  # already covered by a merged segment (its old parts are being removed)
            if start > len(out):
                return None
            out.starts.append(start)
            out.tables.append(pa.ipc.open_file(pa.memory_map(str(path))).read_all())
        return out if len(out) == n else None

    def clear(self) -> None:
        if self.root is not None:
            for path in self.root.glob("texts-*.arrow"):
                path.unlink(missing_ok=True)
        self.starts, self.tables = [], []

    def append(self, first_row: int, table: pa.Table) -> None:
        """Add the texts of rows ``[first_row, first_row + len(table))``."""
        if first_row != len(self):
            raise ValueError(f"text rows must be appended in order: expected row {len(self)}, got {first_row}")
        if not table.num_rows:
            return
        table = table.select(list(COLUMNS)).cast(SCHEMA)
        if self.root is not None:
            table = self._write(first_row, table)
        self.starts.append(first_row)
        self.tables.append(table)
        if self.root is not None and len(self.tables) > MAX_SEGMENTS:
            merged = self._write(0, pa.concat_tables(self.tables))
            old = [self.root / f"texts-{s}.arrow" for s in self.starts[1:]]
            self.starts, self.tables = [0], [merged]
            for path in old:
                path.unlink(missing_ok=True)

    def get(self, rows) -> list[tuple[str, str]]:
        """``(transcript, caption)`` of each row."""
        rows = np.asarray(rows, dtype=np.int64)
        out: list[tuple[str, str]] = [("", "")] * len(rows)
        segment = np.searchsorted(self.starts, rows, side="right") - 1
        for s in np.unique(segment):
            at = np.flatnonzero(segment == s)
            taken = self.tables[s].take(pa.array(rows[at] - self.starts[s]))
            for i, t, c in zip(at, taken.column("transcript").to_pylist(), taken.column("caption").to_pylist()):
                out[i] = (t or "", c or "")
        return out

    def _write(self, first_row: int, table: pa.Table) -> pa.Table:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"texts-{first_row}.arrow"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
            writer.write_table(table, max_chunksize=65536)
        tmp.replace(path)
        return pa.ipc.open_file(pa.memory_map(str(path))).read_all()
