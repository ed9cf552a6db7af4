"""The query side of the index: the :class:`SearchBackend` protocol the retriever calls, and
:class:`Snapshot`, which implements it over one published search snapshot (:mod:`index.files`),
every file memory-mapped read-only. :class:`Snapshots` follows a store's newest snapshot: the one
place that decides whether what a process answers from is current.

Keys are catalog rows. A query takes one snapshot and uses it to the end, so a newer snapshot
published meanwhile never mixes into an answer; the next query takes the newer one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from egorag.errors import EgoragError, StoreDamagedError
from egorag.filters import SceneFilter
from egorag.schema import (
    EncoderFingerprint,
    Keyframes,
    Scene,
    decode_fingerprints,
    videos_from_table,
)
from egorag.stats import Moments
from index import files
from index.catalog import SceneCatalog, SceneMeta, video_vectors
from index.texts import TOKENIZER, SceneTexts
from index.vectors import ColumnIndex, FaissOptions, FusedSketch, RowVectors

logger = logging.getLogger("egorag")

#: what a snapshot's files are laid out as; a manifest with another format is rebuilt
FORMAT = {"layout": 2, "tokenizer": TOKENIZER}
PREFETCH_ABOVE = 0.5  # of the machine's memory: row copies larger than this are read ahead per query
CHECK_S = 0.5  # how stale a long-lived reader may be about other processes' writes


@dataclass(frozen=True)
class VideoLevel:
    """Every complete video, its global vectors (a row per video, zeros where absent), which
    are present, and what the snapshot derived from them (:func:`index.catalog.derive_video_level`)."""

    ids: list[str]
    vectors: Mapping[str, np.ndarray]
    present: Mapping[str, np.ndarray]
    derived: Mapping[str, np.ndarray]


class SearchBackend(Protocol):
    """What the hierarchical retriever asks of the index. Keys are opaque integers (catalog
    rows); similarities are inner products of unit vectors."""

    @property
    def generation(self) -> int:
        """Changes whenever the searchable state does (the retriever's caches follow it)."""

    @property
    def modalities(self) -> tuple[str, ...]:
        """The vector columns the store holds."""

    @property
    def sketch_modalities(self) -> tuple[str, ...]:
        """The modalities the fused sketch covers (none: no sketch)."""

    @property
    def has_keyframes(self) -> bool: ...

    def search_keys(self, modality: str, query: np.ndarray, k: int, where: SceneFilter | None = None) -> list[tuple[int, float]]:
        """The top ``k`` keys of one modality and their (approximate) similarities."""

    def filter_keys(self, where: SceneFilter, limit: int) -> list[int] | None:
        """Every key passing a filter that names videos; None when more than ``limit``."""

    def text_search(self, text: str, k: int, where: SceneFilter | None = None) -> list[tuple[int, float]]:
        """The best ``k`` keys by BM25 and their scores."""

    def sketch_query(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """The fused sketch's query from each modality's query scaled by ``w_m / sigma_m``."""

    def sketch_search(self, queries: np.ndarray, n: int) -> list[list[int]]:
        """For each sketch query, the ``n`` keys with the best approximate fused score."""

    def sketch_scores(self, query: np.ndarray, keys: Sequence[int]) -> np.ndarray:
        """Approximate fused scores of ``keys`` (finer than the search's)."""

    def video_codes(self, keys: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Each key's video as a code into a name table (the same table object per generation)."""

    def vectors(self, modality: str, keys: Sequence[int]) -> np.ndarray:
        """Exact vectors of ``keys``; NaN rows where a scene has none for ``modality``."""

    def background_moments(self, modality: str) -> Moments:
        """The calibration sample's moments for ``modality``."""

    def meta(self, keys: Sequence[int]) -> list[SceneMeta]: ...

    def key_of(self, scene_id: str) -> int | None:
        """The key of a scene id; None when no complete video has that scene."""

    def scenes(self, keys: Sequence[int]) -> list[Scene]:
        """Scenes with their texts and word moments (no vectors)."""

    def keyframes(self, keys: Sequence[int]) -> dict[int, Keyframes]:
        """Keyframe vectors and times of the keys that have them."""

    def video_level(self) -> VideoLevel: ...


class SnapshotInvalid(Exception):
    """A snapshot's files do not match its manifest (the message names the file)."""


def verified_manifest(root: Path, full: bool = False) -> dict:
    """The manifest of the snapshot ``root`` once its files are checked against it (``full``:
    every checksum, as ``egorag check`` does); :class:`SnapshotInvalid` says what is wrong."""
    manifest = files.read_manifest(root)
    if manifest is None:
        raise SnapshotInvalid(f"{root / files.MANIFEST} is missing or damaged")
    if manifest.get("format") != FORMAT:
        raise SnapshotInvalid(f"{root} was written in another layout ({manifest.get('format')})")
    problem = files.check_manifest(root, manifest, full)
    if problem is not None:
        raise SnapshotInvalid(problem)
    return manifest


class SnapshotParts:
    """The searchable state a snapshot's files hold, loaded the same way by its readers and,
    from a staged copy, by the writer that builds the next snapshot on it."""

    catalog: SceneCatalog
    columns: dict[str, ColumnIndex]
    rows: dict[str, RowVectors]
    keyframe_vectors: RowVectors | None
    keyframe_times: RowVectors | None
    texts: SceneTexts
    sketch: FusedSketch | None

    def _load_parts(self, root: Path, manifest: Mapping, fingerprints: Mapping[str, EncoderFingerprint]) -> None:
        import faiss

        self.catalog = SceneCatalog.load(root / "catalog.parquet")
        n = len(self.catalog)
        self.columns = {}
        for m, meta in manifest["columns"].items():
            # IVF lists and flat vectors stay in the file, mapped; an HNSW graph is read
            flags = faiss.IO_FLAG_MMAP | (faiss.IO_FLAG_MMAP_IFC if meta["kind"] == "flat" else 0)
            index = faiss.read_index(str(root / f"{m}.faiss"), flags)
            self.columns[m] = ColumnIndex(index, meta["kind"], set(meta["dead"]), str(root / f"{m}.faiss"), dirty=False)
        self.rows = {m: RowVectors.open(root / f"{m}.f32", fingerprints[m].dim, n) for m in manifest["rows"]}
        kf = manifest.get("keyframes")
        self.keyframe_vectors = RowVectors.open(root / "keyframes.f32", kf["dim"], kf["rows"]) if kf else None
        self.keyframe_times = RowVectors.open(root / "keyframe_times.f32", 1, kf["rows"]) if kf else None
        self.texts = SceneTexts.open(root, n)
        self.sketch = FusedSketch.load(root, manifest["sketch"]) if manifest.get("sketch") else None


class Snapshot(SnapshotParts):
    """One published snapshot, opened read-only. Implements :class:`SearchBackend`."""

    def __init__(self, root: Path, manifest: Mapping, options: FaissOptions = FaissOptions()):
        self.root = root
        self.manifest = manifest
        self.options = options
        self.generation = int(root.name)
        self.versions: dict[str, int] = dict(manifest["versions"])
        self.fingerprints: dict[str, EncoderFingerprint] = decode_fingerprints(manifest["fingerprints"].encode())
        self._load_parts(root, manifest, self.fingerprints)
        self.videos = files.read_table(root / "videos.arrow")
        self.derived = files.read_arrays(root / "derived.arrow")
        self._moments: dict[str, Moments] = {}
        # a store whose row copies take more than half the memory will not stay in the page
        # cache: a query then asks for its scattered rows ahead (measured at 1M scenes with
        # keyframes, 21 GB on 24: text p50 56 -> 38 ms, p99 0.5-0.6 s -> 55 ms from a cold cache;
        # +2.6 ms p50 when every page is cached, hence not for stores that fit)
        mapped = sum(r.data.nbytes for r in [*self.rows.values(), self.keyframe_vectors] if r is not None)
        self.prefetch = mapped > PREFETCH_ABOVE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        self._place()

    @classmethod
    def open(cls, root: Path, options: FaissOptions = FaissOptions(), full: bool = False) -> Snapshot:
        """Open a published snapshot after checking its files against its manifest."""
        return cls(root, verified_manifest(root, full), options)

    # -- what the snapshot holds --------------------------------------------------------------

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.fingerprints)

    @property
    def sketch_modalities(self) -> tuple[str, ...]:
        return self.sketch.modalities if self.sketch is not None else ()

    @property
    def has_keyframes(self) -> bool:
        return self.keyframe_vectors is not None

    def video_table(self) -> list:
        """The videos table as of this snapshot (:class:`egorag.schema.Video` records)."""
        return videos_from_table(self.videos)

    def video_level(self) -> VideoLevel:
        vectors, present = video_vectors(self.videos, self.fingerprints)
        return VideoLevel(self.videos.column("video_id").to_pylist(), vectors, present,
                          {k[len("video."):]: v for k, v in self.derived.items() if k.startswith("video.")})

    def background_moments(self, modality: str) -> Moments:
        """Made once per snapshot and modality: every query calibrates against them."""
        if modality not in self._moments:
            d, key = self.derived, f"background.{modality}"
            if f"{key}.mean" in d:
                self._moments[modality] = Moments(d[f"{key}.mean"], d[f"{key}.cov"], int(d[f"{key}.n"]))
            else:
                self._moments[modality] = Moments.of(np.zeros((0, self.fingerprints[modality].dim), np.float32))
        return self._moments[modality]

    # -- searches -----------------------------------------------------------------------------

    def search_keys(self, modality: str, query: np.ndarray, k: int, where: SceneFilter | None = None) -> list[tuple[int, float]]:
        """Top-k catalog rows and their similarities (approximate for IVF: the retriever
        re-scores candidates exactly); a filter passing few rows scores them exactly."""
        column = self.columns.get(modality)
        if column is None:
            return []
        allowed = None
        if where is not None and not where.is_empty():
            rows = self.catalog.rows(where)
            if rows is None:
                allowed = self.catalog.mask(where)
                rows = np.flatnonzero(allowed) if allowed.sum() <= self.options.exact_below else None
            if rows is not None:
                rows = rows[self.catalog.has[modality][rows]]
            if rows is not None and len(rows) <= self.options.exact_below:
                sims = self.rows[modality].take(rows) @ np.asarray(query, np.float32).reshape(-1)
                top = np.argsort(-sims)[:k]
                return [(int(rows[i]), float(sims[i])) for i in top]
            if allowed is None:
                allowed = self.catalog.mask(where)
        if allowed is None and column.dead:  # HNSW keeps deleted rows: search the alive ones
            allowed = self.catalog.alive
        scores, rows = column.search(query, k, allowed, self.options)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]

    def search(self, modality: str, vectors: np.ndarray, k: int, where: SceneFilter | None = None) -> list[list[tuple[str, float]]]:
        """Scene ids and exact similarities, as :meth:`index.lance.LanceSceneStore.search` gives."""
        out = []
        for q in np.atleast_2d(np.asarray(vectors, dtype=np.float32)):
            rows = np.array([r for r, _ in self.search_keys(modality, q[None, :], k, where)], dtype=np.int64)
            sims = self.rows[modality].take(rows) @ q if len(rows) else np.zeros(0, np.float32)
            order = np.argsort(-sims, kind="stable")
            out.append(list(zip(self.catalog.scene_ids(rows[order]), sims[order].tolist())))
        return out

    def filter_keys(self, where: SceneFilter, limit: int) -> list[int] | None:
        rows = self.catalog.rows(where)
        if rows is None or len(rows) > limit:
            return None
        return rows.tolist()

    def text_search(self, text: str, k: int, where: SceneFilter | None = None) -> list[tuple[int, float]]:
        allowed = self.catalog.mask(where) if where is not None and not where.is_empty() else self.catalog.alive
        return self.texts.search(text, k, allowed, self.catalog.alive)

    def sketch_query(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.sketch.query(parts)

    def sketch_search(self, queries: np.ndarray, n: int) -> list[list[int]]:
        return [rows.tolist() for rows in self.sketch.search(queries, n, self.catalog.alive, self.options.split_scan)]

    def sketch_scores(self, query: np.ndarray, keys: Sequence[int]) -> np.ndarray:
        return self.sketch.scores(query, np.asarray(list(keys), np.int64))

    # -- what candidates and hits need --------------------------------------------------------

    def video_codes(self, keys: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        return self.catalog.video_code[np.asarray(keys, dtype=np.int64)], self.catalog.video_names

    def vectors(self, modality: str, keys: Sequence[int]) -> np.ndarray:
        keys = np.asarray(list(keys), dtype=np.int64)
        out = np.full((len(keys), self.fingerprints[modality].dim), np.nan, dtype=np.float32)
        if modality in self.rows and len(keys):
            present = self.catalog.has[modality][keys] & self.catalog.alive[keys]
            if present.any():
                rows = self.rows[modality]
                if self.prefetch:
                    rows.prefetch((key, 1) for key in keys[present].tolist())
                out[present] = rows.take(keys[present])
        return out

    def meta(self, keys: Sequence[int]) -> list[SceneMeta]:
        return self.catalog.meta(list(keys))

    def key_of(self, scene_id: str) -> int | None:
        return self.catalog.row_of(scene_id)

    def scenes(self, keys: Sequence[int]) -> list[Scene]:
        keys = list(keys)
        texts, moments = self.texts.get(keys), self.texts.moments(keys)
        return [
            Scene(m.scene_id, m.video_id, m.video_path, m.scene_index, m.start, m.end, transcript=t, caption=c, screen_text=s,
                  moments=when, audio_events=tuple(m.audio_events or ()), speakers=tuple(m.speakers or ()))
            for m, (t, c, s), when in zip(self.catalog.meta(keys), texts, moments)
        ]

    def keyframes(self, keys: Sequence[int]) -> dict[int, Keyframes]:
        if self.keyframe_vectors is None:
            return {}
        out = {}
        keys = [key for key in keys if self.catalog.kf_count[key] and self.catalog.alive[key]]
        if self.prefetch:
            self.keyframe_vectors.prefetch([(self.catalog.kf_first[key], self.catalog.kf_count[key]) for key in keys])
        for key in keys:
            first, count = int(self.catalog.kf_first[key]), int(self.catalog.kf_count[key])
            at = np.arange(first, first + count)
            out[key] = Keyframes(self.keyframe_vectors.take(at), tuple(float(t) for t in self.keyframe_times.take(at)[:, 0]))
        return out

    def _place(self) -> None:
        """Mirror the columns on the GPU when one is asked for (``cuda``) or present (``auto``).
        ``auto`` asks faiss-gpu, or torch when it is already loaded: probing CUDA must not cost
        a torch import."""
        import sys

        import faiss

        from egorag.devices import resolve_device

        if self.options.device == "cpu" or not self.columns:
            return
        if self.options.device == "auto":
            gpu_faiss = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
            if not gpu_faiss and "torch" not in sys.modules:
                return
        device = resolve_device(self.options.device)
        if device.startswith("cuda"):
            for m, column in self.columns.items():
                logger.info("faiss %s: GPU mirror %s", m, column.attach_gpu(device))


class Snapshots:
    """A store's newest snapshot, followed: :meth:`current` is the one staleness check. When
    LanceDB holds commits no snapshot describes (another writer is still building one, or died
    before it could), ``build`` is called; it builds the next snapshot under the store lock, or
    returns False at once when another process holds the lock (the current snapshot is kept
    until that one is published)."""

    def __init__(self, db: str | Path, build: Callable[[bool], bool], options: FaissOptions = FaissOptions()):
        self.db = Path(db)
        self.build = build
        self.options = options
        self._snapshot: Snapshot | None = None
        self._checked = -1e9
        self._lock = threading.Lock()

    def current(self, max_age: float | None = None) -> Snapshot:
        """The newest snapshot that describes LanceDB's newest versions, checked at most every
        ``max_age`` seconds (default ``CHECK_S``; 0: now)."""
        with self._lock:
            now = time.monotonic()
            if self._snapshot is not None and now - self._checked < (CHECK_S if max_age is None else max_age):
                return self._snapshot
            self._checked = now
            for attempt in range(3):
                versions = files.lance_versions(self.db)
                newest = files.newest(self.db)
                if self._snapshot is not None and newest is not None and newest[0] == self._snapshot.generation \
                        and self._snapshot.versions == versions:
                    return self._snapshot
                if newest is not None and (versions is None or self._describes(newest[1], versions)):
                    try:
                        self._snapshot = Snapshot.open(newest[1], self.options)
                        return self._snapshot
                    except SnapshotInvalid as exc:
                        logger.warning("%s: search snapshot not used (%s); rebuilding it from the store", newest[1], exc)
                    except FileNotFoundError:  # removed by a writer since it was listed
                        continue
                try:
                    built = self.build(self._snapshot is None or attempt > 0)
                except OSError as exc:  # a store this process may not write: a read-only mount
                    if self._snapshot is None:
                        raise EgoragError(f"{self.db}: no search snapshot describes the store and none can be written here "
                                          f"({exc}); run `egorag check` where the store is writable") from exc
                    logger.warning("%s: newer commits than the search snapshot, which cannot be rebuilt here (%s); "
                                   "answering from snapshot %d", self.db, exc, self._snapshot.generation)
                    return self._snapshot
                if not built:
                    if self._snapshot is None:
                        raise EgoragError(f"{self.db}: no search snapshot describes the store and none could be built here; "
                                          "run `egorag check` where the store is writable")
                    return self._snapshot  # another process is publishing one: answer from this meanwhile
            raise StoreDamagedError(f"{self.db}: the search snapshot cannot be built; run `egorag check` on it")

    @staticmethod
    def _describes(root: Path, versions: Mapping[str, int]) -> bool:
        manifest = files.read_manifest(root)
        return manifest is not None and manifest.get("versions") == dict(versions)


def read_videos(db: str | Path) -> list | None:
    """The videos table from the newest snapshot's ``videos.arrow`` alone, when that snapshot
    describes LanceDB's current versions and the file is as its manifest lists it; else None."""
    newest = files.newest(db)
    manifest = files.read_manifest(newest[1]) if newest else None
    if manifest is None or manifest.get("format") != FORMAT or manifest.get("versions") != files.lance_versions(db):
        return None
    if files.check_manifest(newest[1], manifest, only="videos.arrow") is not None:
        return None
    try:
        return videos_from_table(files.read_table(newest[1] / "videos.arrow"))
    except FileNotFoundError:  # removed by a writer since it was listed
        return None
