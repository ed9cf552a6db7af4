"""What a query needs from a LanceSceneStore, read from files beside the FAISS indexes, so that a
fresh process answers its first query without importing LanceDB (1.3-2.6 s on a small machine).

After each sync the FAISS accelerator writes, in ``<db>/faiss/``:

- ``store.json``: the encoder fingerprints, the store version the accelerator follows, whether
  any scene has keyframes, and a stamp: the names in both tables' ``_versions`` directories,
  listed *before* anything was read (every LanceDB commit adds a manifest there);
- ``videos.arrow``: every complete video's id, when it was indexed, and its global vectors.

:class:`MappedStore` answers the query side (fingerprints, version, video vectors, video
stamps, keyframe presence) from those files while both directories still hold exactly the
stamped names. Anything else, and everything once a table has changed (a write since, by
anyone), goes to the real :class:`index.lance.LanceSceneStore`, opened on first need. Stale
facts are never used.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from egorag.schema import (
    MODALITIES,
    EncoderFingerprint,
    decode_fingerprints,
    encode_fingerprints,
    vector_column,
)
from index.files import atomic_path

logger = logging.getLogger("egorag")

FACTS = "store.json"
VIDEOS = "videos.arrow"
TABLES = ("scenes", "videos")


def table_versions(db: str | Path, table: str) -> list[str] | None:
    """The manifest names in a LanceDB table's ``_versions`` directory (every commit adds one);
    None when the table is missing."""
    try:
        return sorted(os.listdir(Path(db) / f"{table}.lance" / "_versions"))
    except FileNotFoundError:
        return None


def lance_versions(stamp: dict[str, list[str]]) -> dict[str, int]:
    """Each table's newest version from its manifest names (LanceDB names a version ``v`` either
    ``v.manifest`` or, inverted so that the newest sorts first, ``(2**64 - 1 - v).manifest``)."""
    def version(name: str) -> int:
        n = int(name.partition(".")[0])
        return 2**64 - 1 - n if n > 2**63 else n

    return {table: max((version(n) for n in names if n.endswith(".manifest")), default=0) for table, names in stamp.items()}


def lance_stamp(db: str | Path) -> dict[str, list[str]] | None:
    """The manifest names of both LanceDB tables (None when a table is missing)."""
    stamp = {table: table_versions(db, table) for table in TABLES}
    return None if None in stamp.values() else stamp


def write_facts(root: Path, store, version: int, stamp: dict[str, list[str]]) -> None:
    """Record ``store``'s query-side facts at ``version``; ``stamp`` was listed before any read."""
    fingerprints = store.fingerprints
    stamps = store.video_stamps()
    ids = sorted(stamps)
    position = {v: i for i, v in enumerate(ids)}
    columns = {"video_id": pa.array(ids, pa.string()), "indexed_at": pa.array([stamps[v] for v in ids], pa.int64())}
    for m in store.modalities:
        dim = fingerprints[m].dim
        found, vectors = store.video_vectors(m)
        full = np.zeros((len(ids), dim), np.float32)
        present = np.zeros(len(ids), bool)
        at = np.array([position.get(v, -1) for v in found], np.int64)
        keep = at >= 0  # a video completed after the stamps were read: in the next facts
        full[at[keep]], present[at[keep]] = vectors[keep], True
        columns[vector_column(m)] = pa.FixedSizeListArray.from_arrays(pa.array(full.reshape(-1)), dim, mask=pa.array(~present))
    table = pa.table(columns)
    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(root / VIDEOS) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    facts = {
        "stamp": stamp,
        "version": int(version),
        "fingerprints": json.loads(encode_fingerprints(fingerprints)),
        "has_keyframes": bool(store.has_keyframes()),
    }
    with atomic_path(root / FACTS) as tmp:  # last: it names the videos file it goes with
        tmp.write_text(json.dumps(facts))


def read_facts(root: Path) -> dict | None:
    try:
        return json.loads((root / FACTS).read_text())
    except (OSError, ValueError):
        return None


class MappedStore:
    """The query side of the store at ``uri``, from the accelerator's files while they are
    current; the real store (LanceDB) for everything else, opened on first need."""

    def __init__(self, uri: str | Path, facts: dict, videos: pa.Table):
        self.uri = str(uri)
        self._facts = facts
        self._videos = videos
        self._fingerprints = decode_fingerprints(json.dumps(facts["fingerprints"]).encode())
        self._real = None

    @classmethod
    def open(cls, uri: str | Path) -> MappedStore | None:
        """None unless current facts exist (the caller then opens the real store)."""
        root = Path(uri) / "faiss"
        facts = read_facts(root)
        if facts is None or facts.get("stamp") != lance_stamp(uri):
            return None
        try:
            videos = pa.ipc.open_file(pa.memory_map(str(root / VIDEOS))).read_all()
        except (OSError, pa.ArrowInvalid):
            return None
        return cls(uri, facts, videos)

    @property
    def real(self):
        """The LanceDB store (imports LanceDB on first use)."""
        if self._real is None:
            from index.lance import LanceSceneStore

            self._real = LanceSceneStore(self.uri)
            logger.debug("%s: opened the LanceDB store", self.uri)
        return self._real

    @property
    def current(self) -> bool:
        """Whether the mapped facts still describe the store: never again once a table has
        changed or the real store was opened (from then on it answers everything)."""
        return self._real is None and lance_stamp(self.uri) == self._facts["stamp"]

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real, name)

    # -- answered from the files while current ------------------------------------------------

    @property
    def fingerprints(self) -> Mapping[str, EncoderFingerprint]:
        return dict(self._fingerprints) if self._real is None else self.real.fingerprints

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.fingerprints)

    @property
    def version(self) -> int:
        return int(self._facts["version"]) if self._real is None else self.real.version

    def refresh(self) -> None:
        """Switch to the real store for good once a table has changed."""
        if not self.current:
            self.real.refresh()

    def video_stamps(self) -> dict[str, int]:
        if not self.current:
            return self.real.video_stamps()
        return dict(zip(self._videos.column("video_id").to_pylist(), self._videos.column("indexed_at").to_pylist()))

    def complete_ids(self) -> set[str]:
        return set(self._videos.column("video_id").to_pylist()) if self.current else self.real.complete_ids()

    def video_vectors(self, modality: str) -> tuple[list[str], np.ndarray]:
        if not self.current:
            return self.real.video_vectors(modality)
        if modality not in self._fingerprints:
            return [], np.zeros((0, 0), np.float32)
        column = self._videos.column(vector_column(modality)).combine_chunks()
        present = column.is_valid().to_numpy(zero_copy_only=False)
        vectors = column.values.to_numpy().reshape(len(column), column.type.list_size)[present]
        ids = np.asarray(self._videos.column("video_id").to_pylist(), dtype=object)[present]
        return ids.tolist(), vectors

    def video_matrices(self) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]] | None:
        """Every complete video's id, and for each modality one row per video (zeros where it
        has no vector) with which rows are present: views of the mapped file, nothing copied.
        None once the facts are stale (:meth:`video_vectors` then lists them from LanceDB)."""
        if not self.current:
            return None
        out = {}
        for m in self.modalities:
            column = self._videos.column(vector_column(m))
            column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
            present = column.is_valid().to_numpy(zero_copy_only=False)
            out[m] = (column.values.to_numpy().reshape(len(column), column.type.list_size), present)
        return self._videos.column("video_id").to_pylist(), out

    def has_keyframes(self) -> bool:
        return bool(self._facts["has_keyframes"]) if self.current else self.real.has_keyframes()


def open_for_query(uri: str | Path):
    """The store to query at ``uri``: mapped while the FAISS accelerator's record of it is
    current, else the LanceDB store."""
    mapped = MappedStore.open(uri)
    if mapped is not None:
        return mapped
    from index.lance import LanceSceneStore

    return LanceSceneStore(uri)
