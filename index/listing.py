"""A snapshot of the videos table for listing without LanceDB.

``import lancedb`` alone takes ~2.7 s on a small machine, and ``egorag videos`` should answer in
well under a second. So the engine leaves ``<db>/videos.snapshot.parquet`` after each change: the
videos table's scalar columns, stamped with the names in the table's ``_versions`` directory,
taken *before* the rows were read. Every LanceDB commit adds a manifest there, so a reader trusts
the snapshot only while that directory still holds exactly those names; otherwise (a write since,
by anyone) it reads LanceDB and the snapshot is rewritten. Stale data is never shown.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from egorag.schema import Video, videos_from_table
from index.files import atomic_path
from index.mapped import table_versions

SNAPSHOT = "videos.snapshot.parquet"
STAMP_KEY = b"egorag.versions"
CHECKSUM_KEY = b"egorag.blake2b"  # of the rows' values: a changed byte is caught whatever it hit

logger = logging.getLogger("egorag")


def _checksum(table) -> str:
    rows = json.dumps(table.to_pylist(), default=str, sort_keys=True).encode()
    return hashlib.blake2b(rows, digest_size=16).hexdigest()


def read_snapshot(db: str | Path) -> list[Video] | None:
    """The listed videos (no global vectors), or None when there is no current snapshot."""
    db = Path(db)
    path = db / SNAPSHOT
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        stamp = json.loads(table.schema.metadata[STAMP_KEY])
        checksum = table.schema.metadata[CHECKSUM_KEY].decode()
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        logger.warning("%s cannot be read (%s); listing from the store", path, exc)
        return None
    if stamp != table_versions(db, "videos"):
        return None
    if _checksum(table.replace_schema_metadata(None)) != checksum:
        logger.warning("%s has changed since it was written (checksum mismatch); listing from the store", path)
        return None
    return sorted(videos_from_table(table), key=lambda v: v.path)


def write_snapshot(db: str | Path, store) -> None:
    """Snapshot ``store``'s videos table (atomically replaces the previous one)."""
    import pyarrow.parquet as pq

    db = Path(db)
    stamp = table_versions(db, "videos")  # before reading: a commit in between makes the snapshot stale, not wrong
    if stamp is None:
        return
    store.refresh()  # the handle may be older than the stamp
    table = store.video_scalars().replace_schema_metadata(None)
    table = table.replace_schema_metadata({STAMP_KEY: json.dumps(stamp).encode(), CHECKSUM_KEY: _checksum(table).encode()})
    with atomic_path(db / SNAPSHOT) as tmp:
        pq.write_table(table, tmp)
