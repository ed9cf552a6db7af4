"""The write side of the index: the next search snapshot, built from LanceDB by one writer.

:func:`build_snapshot` holds the store lock, reads LanceDB's newest versions of both tables, and
publishes a snapshot that describes exactly them (:mod:`index.files` for the layout). It starts
from the newest valid snapshot: the videos added, re-indexed or deleted since are applied to a
staged copy (hard links; unchanged files are shared), so an index run costs what changed, not
the store's size. A snapshot that fails its manifest is not built on: the next one is built
from LanceDB alone.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from egorag.schema import encode_fingerprints, vector_column, vector_matrix
from egorag.stats import Moments
from index import files
from index.catalog import SceneCatalog, derive_video_level, video_vectors
from index.lance import LanceSceneStore
from index.snapshot import FORMAT, SnapshotInvalid, SnapshotParts, verified_manifest
from index.texts import SceneTexts
from index.vectors import (
    TRAIN_ROWS,
    ColumnIndex,
    FaissOptions,
    FusedSketch,
    RowVectors,
    build_index,
    ivf_lists,
)

logger = logging.getLogger("egorag")

BACKGROUND_SAMPLE = 4096  # scene vectors per modality the calibration moments are drawn from


def build_snapshot(store: LanceSceneStore, options: FaissOptions = FaissOptions(), wait: bool = True) -> bool:
    """Publish a snapshot of ``store``'s newest versions unless the newest one already
    describes them. Returns False only when ``wait`` is False and another process holds the
    store lock (it is building one)."""
    with files.store_lock(store.uri, wait=wait) as held:
        if not held:
            return False
        store.refresh()
        versions = files.lance_versions(store.uri)
        newest = files.newest(store.uri)
        previous, manifest = None, None
        if newest is not None:
            try:
                previous, manifest = newest[1], verified_manifest(newest[1])
            except SnapshotInvalid as exc:
                logger.warning("%s: search snapshot not used (%s); building the next one from the store", newest[1], exc)
        if manifest is not None and manifest["versions"] == versions:
            return True
        _Builder(store, options, versions, previous, manifest).run()
        return True


class _Builder(SnapshotParts):
    """One snapshot build: the previous snapshot's state loaded from a staged copy, changed,
    written back into it, then published."""

    def __init__(self, store: LanceSceneStore, options: FaissOptions, versions: dict[str, int], previous: Path | None,
                 manifest: dict | None):
        """``previous``/``manifest``: the newest snapshot, verified (None: build from the store alone)."""
        self.store = store
        self.options = options
        self.versions = versions
        self.modalities = store.modalities
        self.fingerprints = store.fingerprints
        same_encoders = manifest is not None and manifest["fingerprints"] == encode_fingerprints(self.fingerprints).decode()
        self.previous = manifest if same_encoders else None
        self.root = files.stage(store.uri, previous if same_encoders else None)

    def run(self) -> None:
        try:
            self._load()
            self._apply()
            files.write_manifest(self.root, self._save(), self.previous)
            generation, _ = files.publish(self.store.uri, self.root)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        files.collect(self.store.uri)
        logger.debug("%s: published search snapshot %d (%d scenes)", self.store.uri, generation, len(self.catalog))

    # -- the previous state -------------------------------------------------------------------

    def _load(self) -> None:
        """The previous snapshot's state from the staged copy, or an empty one."""
        if self.previous is not None:
            self._load_parts(self.root, self.previous, self.fingerprints)
        else:
            self.catalog, self.columns, self.rows, self.sketch = SceneCatalog.empty(self.modalities), {}, {}, None
            self.texts = SceneTexts(self.root)
            self.keyframe_vectors = self.keyframe_times = None
        if self.keyframe_vectors is None and "visual" in self.modalities:
            self.keyframe_vectors = RowVectors(self.fingerprints["visual"].dim, self.root / "keyframes.f32")
            self.keyframe_times = RowVectors(1, self.root / "keyframe_times.f32")

    # -- applying what changed ----------------------------------------------------------------

    def _apply(self) -> None:
        self.videos = self.store.videos_table()
        stamps = dict(zip(self.videos.column("video_id").to_pylist(), self.videos.column("indexed_at").cast(pa.int64()).to_pylist()))
        known = self.catalog.stamps
        removed = [v for v in known if stamps.get(v) != known[v]]
        added = [v for v in stamps if known.get(v) != stamps[v]]
        before = self.previous["versions"] if self.previous else {}
        behind = {t: (v, self.versions.get(t, 0)) for t, v in before.items() if self.versions.get(t, 0) < v}
        if behind:
            gone = sorted(set(known) - set(stamps))
            logger.warning("%s: the store went back to an older version (%s): its newest commits are lost; %d video(s) "
                           "in the search snapshot are not in the store: %s; index them again", self.store.uri,
                           ", ".join(f"{t} {old} -> {new}" for t, (old, new) in sorted(behind.items())), len(gone), ", ".join(gone[:10]))
        if removed:
            rows = self.catalog.kill_videos(removed)
            for column in self.columns.values():
                column.remove(rows)
        if added:
            self._add(None if not known else added)
            self.catalog.stamps.update({v: stamps[v] for v in added})
        self._rebuild_if_needed()
        self._sync_sketch()

    def _add(self, video_ids: list[str] | None) -> None:
        """Append the scenes of ``video_ids`` (all complete videos when None) to the catalog,
        their texts and keyframes, then stream each modality's vectors into its index one batch
        at a time: memory stays near one column's index, whatever the store's size."""
        scenes = self.store.scene_scalars(video_ids, with_text=True).sort_by([("video_id", "ascending"), ("scene_index", "ascending")])
        scenes = self._with_keyframes(scenes, video_ids)
        rows_added = self.catalog.append(scenes)
        if len(rows_added):
            self.texts.append(int(rows_added[0]), scenes)
        for m in self.modalities:
            self._row_vectors(m).resize(len(self.catalog))
            n_new = int(self.catalog.has[m][rows_added].sum()) if len(rows_added) else 0
            if not n_new:
                continue
            if m not in self.columns:
                index, kind = build_index(self._training_sample(m, video_ids, n_new), self.options.kind, self.options, n=n_new)
                self.columns[m] = ColumnIndex(index, kind)
            for batch in self.store.iter_vectors(m, video_ids):
                if batch.num_rows:
                    rows = self.catalog.locate(batch)
                    keep = np.flatnonzero(rows >= 0)
                    vectors = vector_matrix(batch.column(vector_column(m)).take(pa.array(keep)), self.fingerprints[m].dim)
                    self.columns[m].add(vectors, rows[keep])
                    self.rows[m].write(rows[keep], vectors)
            self.rows[m].flush()
            logger.debug("snapshot %s: +%d vectors (%s)", m, n_new, self.columns[m].kind)

    def _with_keyframes(self, scenes: pa.Table, video_ids: list[str] | None) -> pa.Table:
        """``scenes`` (sorted by video, then scene index) with where each one's keyframes start
        in ``keyframes.f32`` and how many it has; the keyframes are appended a batch at a time
        as the store streams them (a scene's are contiguous; scenes in any order)."""
        first = np.zeros(scenes.num_rows, np.int64)
        count = np.zeros(scenes.num_rows, np.int32)
        if self.keyframe_vectors is None or not scenes.num_rows:
            return scenes.append_column("kf_first", pa.array(first)).append_column("kf_count", pa.array(count))
        starts: dict[str, int] = {}
        for row, video in enumerate(scenes.column("video_id").to_pylist()):
            starts.setdefault(video, row)
        dim = self.keyframe_vectors.dim
        for batch in self.store.iter_keyframes(video_ids):
            base = np.fromiter((starts.get(v, -1) for v in batch.column("video_id").to_pylist()), np.int64, batch.num_rows)
            keep = base >= 0  # a video completed since the scenes were read: in the next snapshot
            rows = (base + batch.column("scene_index").to_numpy().astype(np.int64))[keep]
            lists = batch.column("keyframe_vecs")
            counts = lists.value_lengths().fill_null(0).to_numpy().astype(np.int64)
            values = lists.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
            times = _keyframe_times(batch.column("keyframe_times"), counts)
            taken = np.repeat(keep, counts)
            at = len(self.keyframe_vectors)
            n = int(taken.sum())
            self.keyframe_vectors.resize(at + n)
            self.keyframe_times.resize(at + n)
            self.keyframe_vectors.write(np.arange(at, at + n), values[taken])
            self.keyframe_times.write(np.arange(at, at + n), times[taken, None])
            first[rows] = at + np.concatenate([[0], np.cumsum(counts[keep])[:-1]])
            count[rows] = counts[keep]
        self.keyframe_vectors.flush()
        self.keyframe_times.flush()
        return scenes.append_column("kf_first", pa.array(first)).append_column("kf_count", pa.array(count))

    def _row_vectors(self, modality: str) -> RowVectors:
        if modality not in self.rows:
            path = self.root / f"{modality}.f32"
            path.unlink(missing_ok=True)
            self.rows[modality] = RowVectors(self.fingerprints[modality].dim, path)
        return self.rows[modality]

    def _training_sample(self, modality: str, video_ids, n: int) -> np.ndarray:
        """What a new index is trained on: nothing for flat, a uniform sample for IVF."""
        dim = self.fingerprints[modality].dim
        kind = self.options.kind if self.options.kind != "auto" else ("flat" if n < self.options.ivf_threshold else "ivf")
        if kind != "ivf":
            return np.zeros((0, dim), np.float32)
        keep = min(1.0, 64 * ivf_lists(n) / n)
        rng = np.random.default_rng(0)
        parts = []
        for batch in self.store.iter_vectors(modality, video_ids):
            chosen = np.flatnonzero(rng.random(batch.num_rows) < keep)
            if len(chosen):
                parts.append(vector_matrix(batch.column(vector_column(modality)).take(pa.array(chosen)), dim))
        return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)

    def _rebuild_if_needed(self) -> None:
        """Compact HNSW tombstones and move a grown flat index to IVF (auto mode)."""
        for m, column in list(self.columns.items()):
            live = np.flatnonzero(self.catalog.alive & self.catalog.has[m])
            grown = self.options.kind == "auto" and column.kind == "flat" and len(live) >= 2 * self.options.ivf_threshold
            if (column.kind == "hnsw" and len(column.dead) > self.options.rebuild_fraction * max(1, len(live))) or grown:
                vectors = self.rows[m].take(live)
                index, kind = build_index(vectors, self.options.kind, self.options)
                self.columns[m] = ColumnIndex(index, kind)
                self.columns[m].add(vectors, live)
                logger.info("rebuilt the %s index for %s (%d vectors)", kind, m, len(live))

    def _sync_sketch(self) -> None:
        """Build the fused sketch once the store is large enough, append new rows to it, and
        retrain it when the store has grown 4x, lost ``rebuild_fraction`` of its rows, or gained
        a modality held by 5 % of its scenes."""
        alive = self.catalog.alive
        n_alive = int(alive.sum())
        wanted = {m for m in self.modalities if m in self.rows and (self.catalog.has[m] & alive).sum() >= 0.05 * n_alive}
        if not self.options.sketch_threshold or n_alive < self.options.sketch_threshold or not wanted:
            self.sketch = None
            FusedSketch.remove(self.root)
            return
        sketch = self.sketch
        stale = (
            sketch is None
            or len(sketch) > len(self.catalog)
            or n_alive < (1 - self.options.rebuild_fraction) * len(sketch)
            or len(self.catalog) >= 4 * sketch.trained_rows
            or bool(wanted - set(sketch.modalities))
        )
        if stale:
            rows = np.flatnonzero(alive)
            sample = np.sort(np.random.default_rng(0).choice(rows, min(len(rows), TRAIN_ROWS), replace=False))
            blocks = {m: self._block(m, sample) for m in sorted(wanted)}
            sketch = FusedSketch.train(blocks, len(sample), len(self.catalog), self.root)
            logger.info("trained the fused sketch on %d scenes (%s)", len(sample), ", ".join(sketch.modalities))
        for start in range(len(sketch), len(self.catalog), TRAIN_ROWS):
            batch = np.arange(start, min(len(self.catalog), start + TRAIN_ROWS))
            sketch.append(sketch.project({m: self._block(m, batch) for m in sketch.modalities}, len(batch)))
        self.sketch = sketch

    def _block(self, modality: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The vectors of ``rows`` that have ``modality``, and which rows have it."""
        present = self.catalog.has[modality][rows]
        return self.rows[modality].take(rows[present]), present

    # -- writing ------------------------------------------------------------------------------

    def _save(self) -> dict:
        """Write what changed into the staged snapshot; returns the manifest's description."""
        import faiss

        for m, column in self.columns.items():
            if column.dirty or not (self.root / f"{m}.faiss").exists():
                with files.atomic_path(self.root / f"{m}.faiss") as tmp:
                    faiss.write_index(column.index, str(tmp))
        sketch = self.sketch.save(self.root) if self.sketch is not None else None
        self.catalog.save(self.root / "catalog.parquet")
        files.write_table(self.root / "videos.arrow", self.videos)
        files.write_arrays(self.root / "derived.arrow", self._derived())
        keyframes = None
        if self.keyframe_vectors is not None and len(self.keyframe_vectors):
            keyframes = {"dim": self.keyframe_vectors.dim, "rows": len(self.keyframe_vectors)}
        else:
            for name in ("keyframes.f32", "keyframe_times.f32"):
                (self.root / name).unlink(missing_ok=True)
        return {
            "format": FORMAT,
            "versions": self.versions,
            "fingerprints": encode_fingerprints(self.fingerprints).decode(),
            "scenes": len(self.catalog),
            "columns": {m: {"kind": c.kind, "dead": sorted(c.dead)} for m, c in self.columns.items()},
            "rows": sorted(self.rows),
            "keyframes": keyframes,
            "sketch": sketch,
        }

    def _derived(self) -> dict[str, np.ndarray]:
        """The calibration moments of each modality (a fixed sample of its scene vectors) and
        the video level's derived state: computed here once, mapped by every reader."""
        out: dict[str, np.ndarray] = {}
        for m in self.rows:
            rows = np.flatnonzero(self.catalog.alive & self.catalog.has[m])
            if len(rows) > BACKGROUND_SAMPLE:
                rows = np.sort(np.random.default_rng(0).choice(rows, BACKGROUND_SAMPLE, replace=False))
            if len(rows):
                moments = Moments.of(self.rows[m].take(rows))
                out.update({f"background.{m}.mean": moments.mean, f"background.{m}.cov": moments.cov,
                            f"background.{m}.n": np.array(moments.n)})
        vectors, present = video_vectors(self.videos, self.fingerprints)
        out.update({f"video.{k}": v for k, v in derive_video_level(vectors, present).items()})
        return out


def _keyframe_times(lists: pa.Array, counts: np.ndarray) -> np.ndarray:
    """Each keyframe's time, in the order of the keyframes' vectors (``counts`` per scene); NaN
    for a scene whose times are missing or do not match its vectors."""
    given = lists.value_lengths().fill_null(0).to_numpy().astype(np.int64)
    values = lists.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    if np.array_equal(given, counts):
        return values
    out = np.full(int(counts.sum()), np.nan, np.float32)
    at, from_ = np.cumsum(counts) - counts, np.cumsum(given) - given
    for j in np.flatnonzero(given == counts):
        out[at[j] : at[j] + counts[j]] = values[from_[j] : from_[j] + counts[j]]
    return out
