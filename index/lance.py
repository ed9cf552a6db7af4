"""LanceDB scene store: the system of record. Two tables, ``videos`` and ``scenes``; the encoders'
fingerprint lives in both tables' schema metadata."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from egorag.errors import EgoragError, IndexMismatchError, StoreDamagedError
from egorag.filters import SceneFilter, sql_quote
from egorag.schema import (
    FINGERPRINT_KEY,
    LABELS_TYPE,
    MODALITIES,
    EncoderFingerprint,
    Keyframes,
    Moment,
    Scene,
    Video,
    decode_fingerprints,
    rows_to_table,
    scene_schema,
    vector_column,
    vector_matrix,
    video_schema,
    videos_from_table,
)
from index.files import store_lock

logger = logging.getLogger("egorag")

SCENES, VIDEOS = "scenes", "videos"

SCENE_SCALAR_COLUMNS = ["scene_id", "video_id", "video_path", "scene_index", "start", "end"]
SCENE_LABEL_COLUMNS = ["audio_events", "speakers"]  # what a search can filter on besides videos and times
SCENE_TEXT_COLUMNS = SCENE_SCALAR_COLUMNS + ["transcript", "caption", "screen_text", "moments"] + SCENE_LABEL_COLUMNS


#: One query's ranked candidates: (scene_id, cosine similarity), best first.
ColumnHits = list[tuple[str, float]]


#: What LanceDB says of a commit that lost a race with another writer and may be tried again.
RETRYABLE = ("Retryable commit conflict", "Commit conflict", "too much write contention")
COMMIT_ATTEMPTS = 8
T = TypeVar("T")


def _commit(uri: str, action: Callable[[], T], attempts: int = COMMIT_ATTEMPTS) -> T:
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


class StoreNotFoundError(EgoragError):
    """No egorag store exists at the given location."""


class LanceSceneStore:
    """The scene store on LanceDB.

    Opened with ``fingerprints`` it creates missing tables and refuses a store built by other
    encoders (:class:`IndexMismatchError`); opened without, it reads an existing store as it is.
    """

    def __init__(self, uri: str | Path, fingerprints: Mapping[str, EncoderFingerprint] | None = None):
        import lancedb

        self.uri = str(uri)
        exists = (Path(self.uri) / f"{SCENES}.lance").exists()
        if fingerprints is None and not exists:
            raise StoreNotFoundError(f"{self.uri}: no egorag store here; index videos into it first")
        self._db = lancedb.connect(self.uri)
        names = set(self._db.list_tables().tables)
        if SCENES in names and VIDEOS in names:
            try:
                self._scenes = self._db.open_table(SCENES)
                self._videos = self._db.open_table(VIDEOS)
                metadata = self._scenes.schema.metadata or {}
            except (RuntimeError, OSError, ValueError, RecursionError) as exc:
                raise StoreDamagedError(f"{self.uri}: LanceDB cannot open the store's tables ({first_line(exc)}); "
                                        "run `egorag check` on it") from exc
            stored = decode_fingerprints(metadata.get(FINGERPRINT_KEY))
            if fingerprints is not None and dict(fingerprints) != stored:
                raise IndexMismatchError(_mismatch_message(self.uri, stored, fingerprints))
            self._fingerprints = stored
        else:
            if fingerprints is None:
                raise StoreNotFoundError(f"{self.uri}: incomplete egorag store (missing tables)")
            self._fingerprints = dict(fingerprints)
            self._scenes = self._db.create_table(SCENES, schema=scene_schema(self._fingerprints), exist_ok=True)
            self._videos = self._db.create_table(VIDEOS, schema=video_schema(self._fingerprints), exist_ok=True)

    # -- contract -----------------------------------------------------------------------------

    @property
    def fingerprints(self) -> Mapping[str, EncoderFingerprint]:
        return dict(self._fingerprints)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self._fingerprints)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the store's write lock (:mod:`index.files`) and see the latest version: what is
        checked inside the block (is this video indexed?) stays true until it ends."""
        with store_lock(self.uri):
            self.refresh()
            yield

    def add_video(self, video: Video, scenes: Sequence[Scene]) -> None:
        """Scenes first, then the video row that makes them visible (see :meth:`complete_ids`)."""
        with self.writing():
            _commit(self.uri, lambda: self._scenes.delete(f"video_id = {sql_quote(video.video_id)}"))  # leftovers of a crash
            if scenes:
                table = rows_to_table([s.to_row() for s in scenes], self._scenes.schema)
                _commit(self.uri, lambda: self._scenes.add(table))
            row = rows_to_table([self._video_row(video)], self._videos.schema)
            _commit(self.uri, lambda: self._videos.add(row))

    def add_arrow(self, videos: pa.Table, scenes: pa.Table) -> None:
        """Bulk ingest of already-encoded records (e.g. from another machine or a cluster job):
        every scene first, then the video rows that make them visible. Tables must match this
        store's schemas (nullable columns may be left out: they are null); ids must be new."""
        scenes, videos = _conform(scenes, self._scenes.schema, "scenes"), _conform(videos, self._videos.schema, "videos")
        with self.writing():
            _commit(self.uri, lambda: self._scenes.add(scenes))
            _commit(self.uri, lambda: self._videos.add(videos))

    @property
    def scenes_uri(self) -> str:
        """The scenes table's Lance dataset (where cluster workers write fragments)."""
        return str(Path(self.uri) / f"{SCENES}.lance")

    def storage_version(self) -> str:
        """The Lance file format version of the scenes table (fragments written elsewhere must match)."""
        import lance

        return lance.dataset(self.scenes_uri).data_storage_version

    def commit_fragments(self, fragments: Sequence[str], videos: Sequence[Video]) -> None:
        """Scene rows written elsewhere as Lance fragments (``FragmentMetadata`` JSON, as cluster
        workers write them) committed in one append, then the video rows that make them visible."""
        import lance

        metadata = [lance.FragmentMetadata.from_json(f) for f in fragments]
        with self.writing():
            if metadata:
                def append() -> None:
                    version = lance.dataset(self.scenes_uri).version
                    lance.LanceDataset.commit(self.scenes_uri, lance.LanceOperation.Append(metadata), read_version=version)

                _commit(self.uri, append)
            if videos:
                rows = rows_to_table([self._video_row(v) for v in videos], self._videos.schema)
                _commit(self.uri, lambda: self._videos.add(rows))
            self.refresh()

    def delete_video(self, video_id: str) -> bool:
        """Hide the video first (its row), then drop its scenes."""
        with self.writing():
            existed = self.get_video(video_id) is not None
            _commit(self.uri, lambda: self._videos.delete(f"video_id = {sql_quote(video_id)}"))
            _commit(self.uri, lambda: self._scenes.delete(f"video_id = {sql_quote(video_id)}"))
        return existed

    def get_video(self, video_id: str) -> Video | None:
        rows = self._query_videos(f"video_id = {sql_quote(video_id)}")
        return rows[0] if rows else None

    def video_by_path(self, path: str) -> Video | None:
        rows = self._query_videos(f"path = {sql_quote(path)}")
        return rows[0] if rows else None

    def videos(self) -> list[Video]:
        return sorted(self._query_videos(None), key=lambda v: v.path)

    def complete_ids(self) -> set[str]:
        table = self._read(self._videos.search().select(["video_id"]).limit(None))
        return set(table.column("video_id").to_pylist())

    def purge_incomplete(self) -> int:
        """Delete scenes whose video never completed (an interrupted run). Returns how many. A
        video another writer is adding is not touched: its scenes and row go in under the lock."""
        with self.writing():
            complete = self.complete_ids()
            found = self._read(self._scenes.search().select(["video_id"]).limit(None)).column("video_id").to_pylist()
            orphans = sorted(set(found) - complete)
            for video_id in orphans:
                _commit(self.uri, lambda v=video_id: self._scenes.delete(f"video_id = {sql_quote(v)}"))
        if orphans:
            logger.info("removed scenes of %d incompletely indexed video(s)", len(orphans))
        return len(orphans)

    def count_scenes(self) -> int:
        return self._scenes.count_rows()

    def get_scenes(self, scene_ids: Sequence[str], with_vectors: bool = False) -> list[Scene]:
        if not scene_ids:
            return []
        ids = ", ".join(sql_quote(s) for s in scene_ids)
        columns = self._scene_columns(with_vectors)
        table = self._read(self._scenes.search().where(f"scene_id IN ({ids})").select(columns).limit(None))
        by_id = {s.scene_id: s for s in self._to_scenes(table)}
        return [by_id[s] for s in scene_ids if s in by_id]

    def scenes_of(self, video_id: str, with_vectors: bool = False) -> list[Scene]:
        columns = self._scene_columns(with_vectors)
        table = (
            self._read(self._scenes.search().where(f"video_id = {sql_quote(video_id)}").select(columns).limit(None))
        )
        return sorted(self._to_scenes(table), key=lambda s: s.scene_index)

    def search(
        self, modality: str, vectors: np.ndarray, k: int, where: SceneFilter | None = None
    ) -> list[ColumnHits]:
        """Exact cosine search of one vector column; LanceDB's own vector search backend."""
        column = vector_column(modality)
        if modality not in self._fingerprints:
            return [[] for _ in range(len(vectors))]
        sql = f"{column} IS NOT NULL"
        if where is not None and (extra := where.to_sql()):
            sql += f" AND {extra}"
        out = []
        for q in np.atleast_2d(np.asarray(vectors, dtype=np.float32)):
            table = (
                self._scenes.search(q, vector_column_name=column)
                .distance_type("cosine")
                .where(sql, prefilter=True)
                .select(["scene_id", "_distance"])
                .limit(k)
                .to_arrow()
            )
            ids = table.column("scene_id").to_pylist()
            sims = 1.0 - table.column("_distance").to_numpy()
            out.append(list(zip(ids, sims.astype(float).tolist())))
        return out

    def text_search(self, query: str, k: int, where: SceneFilter | None = None) -> ColumnHits:
        """BM25 full-text search over transcripts and captions (LanceDB native FTS)."""
        if not query.strip() or not self.has_text_index():
            return []
        search = self._scenes.search(query, query_type="fts").select(["scene_id", "_score"]).limit(k)
        if where is not None and (sql := where.to_sql()):
            search = search.where(sql, prefilter=True)
        table = search.to_arrow()
        return list(zip(table.column("scene_id").to_pylist(), table.column("_score").to_pylist()))

    def scene_vectors(self, modality: str, where: SceneFilter | None = None) -> tuple[list[str], np.ndarray]:
        """All non-null scene vectors of one modality, for building accelerators."""
        column = vector_column(modality)
        dim = self._fingerprints[modality].dim
        sql = f"{column} IS NOT NULL"
        if where is not None and (extra := where.to_sql()):
            sql += f" AND {extra}"
        table = self._read(self._scenes.search().where(sql).select(["scene_id", column]).limit(None))
        return table.column("scene_id").to_pylist(), vector_matrix(table.column(column), dim)

    def scene_scalars(self, video_ids: Sequence[str] | None = None, with_text: bool = False) -> pa.Table:
        """Ids, times, labels and ``has_<modality>`` flags (no vectors read) of the scenes of
        ``video_ids``, or of every complete video; with their texts and moments."""
        columns = {c: c for c in self._present(SCENE_TEXT_COLUMNS if with_text else SCENE_SCALAR_COLUMNS + SCENE_LABEL_COLUMNS)}
        columns.update({f"has_{m}": f"{vector_column(m)} IS NOT NULL" for m in self.modalities})
        search = self._scenes.search().select(columns).limit(None)
        if video_ids is not None:
            search = search.where(self._video_sql(video_ids))
        table = self._complete_only(self._read(search), video_ids)
        for name in SCENE_LABEL_COLUMNS:  # a store made before a label column existed: none
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(table.num_rows, LABELS_TYPE))
        return table

    def iter_vectors(self, modality: str, video_ids: Sequence[str] | None = None, batch_size: int = 65536):
        """Stream ``(video_id, scene_index, vector)`` batches of one modality (non-null only), so
        building an index never holds more than one batch of the column beyond the index."""
        column = vector_column(modality)
        sql = f"{column} IS NOT NULL"
        if video_ids is not None:
            sql += f" AND {self._video_sql(video_ids)}"
        complete = self.complete_ids() if video_ids is None else set(video_ids)
        value_set = pa.array(sorted(complete), pa.string())
        for batch in self._batches(self._scenes.search().where(sql).select(["video_id", "scene_index", column]).limit(None), batch_size):
            keep = pa.compute.is_in(batch.column("video_id"), value_set=value_set)
            yield batch.filter(keep)

    def iter_keyframes(self, video_ids: Sequence[str] | None = None, batch_size: int = 4096):
        """Stream the keyframe vectors and times of the scenes that have them."""
        sql = "keyframe_vecs IS NOT NULL"
        if video_ids is not None:
            sql += f" AND {self._video_sql(video_ids)}"
        columns = ["video_id", "scene_index", "keyframe_vecs", "keyframe_times"]
        yield from self._batches(self._scenes.search().where(sql).select(columns).limit(None), batch_size)

    def videos_table(self) -> pa.Table:
        """The whole videos table at the handle's version: every complete video, vectors too."""
        return self._read(self._videos.search().limit(None))

    def _read(self, query) -> pa.Table:
        """A LanceDB query's rows; a file LanceDB cannot read is a :class:`StoreDamagedError`."""
        with self._reading():
            return query.to_arrow()

    def _batches(self, query, size: int):
        with self._reading():
            yield from query.to_batches(size)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except (RuntimeError, OSError, ValueError) as exc:  # what LanceDB raises for damaged or missing files
            raise StoreDamagedError(f"{self.uri}: LanceDB cannot read the store ({first_line(exc)}); run `egorag check` on it") from exc

    @staticmethod
    def _video_sql(video_ids: Sequence[str]) -> str:
        return f"video_id IN ({', '.join(sql_quote(v) for v in video_ids)})"

    def _complete_only(self, table: pa.Table, video_ids: Sequence[str] | None) -> pa.Table:
        complete = self.complete_ids() if video_ids is None else set(video_ids)
        return table.filter(pa.compute.is_in(table.column("video_id"), value_set=pa.array(sorted(complete), pa.string())))

    def verify(self) -> tuple[int, int, list[str]]:
        """Read every row of both tables (vectors included, a batch at a time) and check that each
        video has the scene rows it says. Returns (videos, scene rows, problems found)."""
        problems, counts, videos = [], {}, []
        try:
            for batch in self._videos.search().limit(None).to_batches(65536):
                videos += zip(*(batch.column(c).to_pylist() for c in ("video_id", "path", "n_scenes")))
            for batch in self._scenes.search().limit(None).to_batches(4096):
                for v in batch.column("video_id").to_pylist():
                    counts[v] = counts.get(v, 0) + 1
        except (RuntimeError, OSError, ValueError, RecursionError) as exc:
            return 0, 0, [f"{self.uri}: LanceDB cannot read the tables ({first_line(exc)})"]
        for video_id, path, n in videos:
            if counts.get(video_id, 0) != n:
                problems.append(f"{path}: {counts.get(video_id, 0)} scene rows in the store, not the {n} indexed")
        return len(videos), sum(counts.values()), problems

    def thumbnail(self, scene_id: str) -> bytes | None:
        """The scene's JPEG thumbnail (None: no such scene, or a store made without them)."""
        if "thumbnail" not in self._scenes.schema.names:
            return None
        table = self._read(self._scenes.search().where(f"scene_id = {sql_quote(scene_id)}").select(["thumbnail"]).limit(1))
        return table.column("thumbnail")[0].as_py() if table.num_rows else None

    @property
    def version(self) -> int:
        return int(self._scenes.version)

    def refresh(self) -> None:
        """See writes made through other handles or processes (a table handle otherwise stays
        at the version it opened; ~0.2 ms)."""
        self._videos.checkout_latest()
        self._scenes.checkout_latest()

    # -- internals ----------------------------------------------------------------------------

    def has_text_index(self) -> bool:
        return any(getattr(ix, "index_type", "") == "FTS" for ix in self._scenes.list_indices())

    def build_indexes(self, full_text: bool = False) -> None:
        """(Re)build the scalar indexes on ``scene_id`` and ``video_id`` that point lookups
        (a scene's record, its thumbnail, a video's scenes) use instead of scanning, and with
        ``full_text`` LanceDB's BM25 index (the reference egorag's own BM25 is tested against).
        Rows added later are still found (unindexed rows are scanned), so this is needed once
        per batch of additions, not per add."""
        from lancedb.index import FTS, BTree

        with self.writing():
            if self.count_scenes():
                if full_text:
                    _commit(self.uri, lambda: self._scenes.create_index("search_text", config=FTS(), replace=True))
                _commit(self.uri, lambda: self._scenes.create_index("scene_id", config=BTree(), replace=True))
                _commit(self.uri, lambda: self._scenes.create_index("video_id", config=BTree(), replace=True))

    def _scene_columns(self, with_vectors: bool) -> list[str]:
        if not with_vectors:
            return self._present(SCENE_TEXT_COLUMNS)
        return [f.name for f in self._scenes.schema if f.name not in ("keyframe_jpegs", "thumbnail")]

    def _present(self, columns: Sequence[str]) -> list[str]:
        """The ``columns`` this store's scenes table has (a store made before a text column
        existed reads as if that column were empty)."""
        names = set(self._scenes.schema.names)
        return [c for c in columns if c in names]

    def _to_scenes(self, table: pa.Table) -> list[Scene]:
        names = set(table.column_names)
        scenes = []
        for row in table.to_pylist():
            vectors = {
                m: (None if row.get(vector_column(m)) is None else np.asarray(row[vector_column(m)], np.float32))
                for m in self.modalities
                if vector_column(m) in names
            }
            keyframes = None
            if row.get("keyframe_vecs"):
                keyframes = Keyframes(np.asarray(row["keyframe_vecs"], np.float32), tuple(row["keyframe_times"] or ()))
            scenes.append(
                Scene(
                    scene_id=row["scene_id"],
                    video_id=row["video_id"],
                    video_path=row["video_path"],
                    scene_index=row["scene_index"],
                    start=row["start"],
                    end=row["end"],
                    transcript=row["transcript"],
                    caption=row["caption"],
                    screen_text=row.get("screen_text") or "",
                    moments=tuple(Moment(m["time"], m["text"], m.get("speaker")) for m in row.get("moments") or ()),
                    audio_events=tuple(row.get("audio_events") or ()),
                    speakers=tuple(row.get("speakers") or ()),
                    vectors=vectors,
                    keyframes=keyframes,
                )
            )
        return scenes

    def _query_videos(self, sql: str | None) -> list[Video]:
        search = self._videos.search()
        if sql:
            search = search.where(sql)
        return videos_from_table(self._read(search.limit(None)), self.modalities)

    def _video_row(self, video: Video) -> dict:
        row = {
            "video_id": video.video_id,
            "path": video.path,
            "content_hash": video.content_hash,
            "size_bytes": video.info.size_bytes,
            "duration": video.info.duration,
            "fps": video.info.fps,
            "width": video.info.width,
            "height": video.info.height,
            "has_audio": video.info.has_audio,
            "n_scenes": video.n_scenes,
            "indexed_at": datetime.now(timezone.utc),
        }
        for modality, vec in video.global_vectors.items():
            row[vector_column(modality)] = None if vec is None else np.asarray(vec, np.float32)
        return row


def _conform(table: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    unknown = set(table.column_names) - set(schema.names)
    missing = [f.name for f in schema if f.name not in table.column_names and not f.nullable]
    if unknown or missing:
        raise ValueError(f"{name} table does not match the store's schema: unknown columns {sorted(unknown)}, missing {missing}")
    columns = [table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _mismatch_message(uri: str, stored: Mapping, wanted: Mapping) -> str:
    def show(fps: Mapping) -> str:
        return ", ".join(f"{m}={fp.encoder}:{fp.checkpoint}({fp.dim}d)" for m, fp in sorted(fps.items())) or "none"

    text = stored.get("text")
    hint = f" (here: {text.setting()})" if text is not None and wanted.get("text") not in (None, text) else ""
    return (
        f"{uri}: this store was built with encoders [{show(stored)}] but the engine is configured with "
        f"[{show(wanted)}]; use the same models{hint} (or modalities), or index into a new --db"
    )
