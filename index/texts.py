"""Each catalog row's transcript, caption and on-screen text, for the final hits, without a
LanceDB query.

A LanceDB point lookup of ten scene ids costs ~10 ms (query planning and an async round trip),
as much as the rest of a fused query. Here the texts live beside the FAISS indexes in Arrow IPC
segments, one per batch of added videos (``texts-<first row>.arrow``), memory-mapped on open:
fetching a hit's text is an Arrow take on a mapped file. Each segment has its BM25 postings
(:class:`index.bm25.Postings`, the folder ``bm25-<first row>``) built from the same texts.
Segments are immutable; past ``MAX_SEGMENTS`` they are merged into one.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from egorag.schema import MOMENTS_TYPE
from index import bm25
from index.base import UNREADABLE
from index.bm25 import Postings
from index.files import atomic_path

COLUMNS = ("transcript", "caption", "screen_text")  # the texts BM25 indexes
MAX_SEGMENTS = 16
FEW = 64  # up to this many rows, :meth:`SceneTexts.get` reads scalars
SCHEMA = pa.schema([(c, pa.string()) for c in COLUMNS] + [("moments", MOMENTS_TYPE)])

logger = logging.getLogger("egorag")


def searchable(table: pa.Table) -> pa.Array:
    """What BM25 indexes for each scene: its transcript, caption and on-screen text."""
    parts = [pc.fill_null(table.column(c).combine_chunks(), "") for c in COLUMNS]
    return pc.binary_join_element_wise(*parts, " ")


class SceneTexts:
    def __init__(self, root: Path | None = None):
        self.root = root  # None: in memory only
        self.starts: list[int] = []
        self.tables: list[pa.Table] = []
        self.postings: list[Postings] = []
        self._live: tuple[tuple[int, int], bm25.Live] | None = None  # BM25's statistics, and for which rows

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
                shutil.rmtree(root / f"bm25-{start}", ignore_errors=True)
                continue
            if start < len(out):
                continue  # already covered by a merged segment (its old parts are being removed)
            if start > len(out):
                return None
            try:
                table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
            except UNREADABLE as exc:  # a torn copy, a bad disk: refilled from the store
                logger.warning("%s cannot be read (%s): refilling the scenes' texts", path, exc)
                return None
            postings = Postings.load(root / f"bm25-{start}", table.num_rows)
            if postings is None:  # a store indexed before BM25 lived here, or an interrupted write
                postings = Postings.build(searchable(table))
                logger.info("bm25: indexed the texts of rows %d-%d", start, start + table.num_rows)
                try:
                    postings.save(root / f"bm25-{start}")
                except OSError as exc:  # a read-only store still searches, from memory
                    logger.warning("bm25: could not save the postings of rows from %d (%s); kept in memory", start, exc)
            out.starts.append(start)
            out.tables.append(table)
            out.postings.append(postings)
        return out if len(out) == n else None

    def clear(self) -> None:
        if self.root is not None:
            for path in self.root.glob("texts-*.arrow"):
                path.unlink(missing_ok=True)
            for path in self.root.glob("bm25-*"):
                shutil.rmtree(path, ignore_errors=True)
        self.starts, self.tables, self.postings = [], [], []

    def append(self, first_row: int, table: pa.Table) -> None:
        """Add the texts of rows ``[first_row, first_row + len(table))``."""
        if first_row != len(self):
            raise ValueError(f"text rows must be appended in order: expected row {len(self)}, got {first_row}")
        if not table.num_rows:
            return
        table = pa.table({f.name: table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                          for f in SCHEMA}).cast(SCHEMA)
        postings = Postings.build(searchable(table))
        if self.root is not None:
            table = self._write(first_row, table, postings)
        self.starts.append(first_row)
        self.tables.append(table)
        self.postings.append(postings)
        if self.root is not None and len(self.tables) > MAX_SEGMENTS:
            merged = self._write(0, pa.concat_tables(self.tables), Postings.merge(self.postings))
            old = self.starts[1:]
            self.starts, self.tables, self.postings = [0], [merged], [Postings.load(self.root / "bm25-0", merged.num_rows)]
            for start in old:
                (self.root / f"texts-{start}.arrow").unlink(missing_ok=True)
                shutil.rmtree(self.root / f"bm25-{start}", ignore_errors=True)

    def get(self, rows) -> list[tuple[str, str, str]]:
        """``(transcript, caption, screen_text)`` of each row."""
        rows = np.asarray(rows, dtype=np.int64)
        out: list[tuple[str, str, str]] = [("", "", "")] * len(rows)
        segment = np.searchsorted(self.starts, rows, side="right") - 1
        if len(rows) <= FEW:  # a hit list: scalar reads (a take concatenates a segment's chunks)
            for i, (r, s) in enumerate(zip(rows.tolist(), segment.tolist())):
                table, local = self.tables[s], r - self.starts[s]
                out[i] = tuple(table.column(c)[local].as_py() or "" for c in COLUMNS)
            return out
        for s in np.unique(segment):
            at = np.flatnonzero(segment == s)
            taken = self.tables[s].take(pa.array(rows[at] - self.starts[s]))
            for i, values in zip(at, zip(*(taken.column(c).to_pylist() for c in COLUMNS))):
                out[i] = tuple(v or "" for v in values)
        return out

    def moments(self, rows) -> list[tuple[tuple[float, str], ...]]:
        """Each row's (time, text) moments: its spoken words and screen lines."""
        out = []
        for r in np.asarray(rows, dtype=np.int64).tolist():
            s = int(np.searchsorted(self.starts, r, side="right")) - 1
            value = self.tables[s].column("moments")[r - self.starts[s]].as_py() or ()
            out.append(tuple((m["time"], m["text"]) for m in value))
        return out

    def search(self, text: str, k: int, allowed: np.ndarray, alive: np.ndarray) -> list[tuple[int, float]]:
        """The ``k`` best rows for ``text`` by BM25 among the ``allowed`` ones, scored against
        the ``alive`` rows (both boolean masks over all rows)."""
        segments = list(zip(self.starts, self.postings))
        key = (len(alive), int(np.count_nonzero(alive)))  # changes with every append and delete
        if self._live is None or self._live[0] != key:
            self._live = (key, bm25.Live.of(segments, alive))
        return bm25.search(segments, text, k, allowed, self._live[1])

    def _write(self, first_row: int, table: pa.Table, postings: Postings) -> pa.Table:
        """Write a segment's postings, then its texts (the texts file is what marks it present)."""
        self.root.mkdir(parents=True, exist_ok=True)
        postings.save(self.root / f"bm25-{first_row}")
        path = self.root / f"texts-{first_row}.arrow"
        with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
            writer.write_table(table, max_chunksize=65536)
        return pa.ipc.open_file(pa.memory_map(str(path))).read_all()
