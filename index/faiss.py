"""FAISS search accelerator over a scene store's vector columns.

One index per modality, built from the LanceDB tables and persisted beside them in
``<db>/faiss/`` (``faiss.write_index`` plus a Parquet catalog; no pickle), updated incrementally
when the store changes: exact (flat) below ``ivf_threshold`` vectors, IVF with 8-bit codes
above (or HNSW when asked); filters become FAISS ID selectors. Beside each index, a row-ordered
float32 copy of the vectors (:class:`index.rowvectors.RowVectors`) re-scores candidates exactly,
and the scenes' texts (:class:`index.texts.SceneTexts`) serve the final hits and BM25
(:mod:`index.bm25`); all are memory-mapped. From ``sketch_threshold`` scenes on, a fused sketch of every scene
(:class:`index.sketch.FusedSketch`) gives the retriever candidates by their whole fused score.
faiss-gpu is used when installed; on a CUDA host without it,
:class:`index.torch_exact.TorchExactIndex` does an exact blockwise GPU search.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa

from egorag.schema import vector_column, vector_matrix
from index import bm25
from index.base import UNREADABLE
from index.catalog import SceneCatalog
from index.faiss_index import ColumnIndex, FaissOptions, build_index, ivf_lists
from index.faiss_queries import FaissQueries
from index.files import (
    LOCK_NAME,
    MANIFEST,
    atomic_path,
    check_manifest,
    read_manifest,
    store_lock,
    write_manifest,
)
from index.mapped import lance_stamp, lance_versions, read_facts, write_facts
from index.prefault import warm
from index.rowvectors import RowVectors
from index.sketch import TRAIN_ROWS, FusedSketch
from index.texts import COLUMNS as TEXT_COLUMNS
from index.texts import SCHEMA as TEXT_SCHEMA
from index.texts import SceneTexts

logger = logging.getLogger("egorag")

CATALOG = "catalog.parquet"


class FaissAccelerator(FaissQueries):
    """Per-modality FAISS indexes and a scene catalog kept in step with a LanceSceneStore,
    persisted in ``<db>/faiss/``. Keys are catalog rows; the queries over them are
    :class:`index.faiss_queries.FaissQueries`."""

    def __init__(self, store, options: FaissOptions = FaissOptions(), persist: bool = True):
        self.store = store
        self.options = options
        self.persist = persist
        self.root = Path(store.uri) / "faiss"
        self.catalog: SceneCatalog | None = None
        self.columns: dict[str, ColumnIndex] = {}
        self.rows: dict[str, RowVectors] = {}
        self.texts = SceneTexts(self.root if persist else None)
        self.sketch: FusedSketch | None = None
        self._synced: int | None = None
        self._synced_at = -1e9  # time.monotonic() of the last sync
        self._stamp: dict | None = None  # the stamp of the store facts on disk
        self._generation: str | None = None  # the catalog generation this process loaded or wrote
        self._manifest: dict | None = None  # the manifest this process loaded or wrote
        self.warming = None  # the thread mapping the files' pages (index.prefault), if any
        self._warm_due = False  # an open or a change since the last warm-up

    @property
    def version(self) -> int:
        """The store version the loaded state describes (the store's own until the first sync)."""
        return self._synced if self._synced is not None else self.store.version

    # -- keeping in step with the store -------------------------------------------------------

    def sync(self) -> None:
        """Follow the store: apply the videos added, re-indexed or deleted since the last sync
        (by this process or another) and persist the result, holding the store's write lock
        (:mod:`index.files`), so one process at a time rewrites the files. Files that another
        process rewrote since this one read them are loaded again first."""
        self._synced_at = time.monotonic()
        self.store.refresh()
        if self._synced == self.store.version:
            return
        with self._persisting() as held:
            if not held:  # another process is writing: keep answering from what is loaded, follow later
                return
            stamp = lance_stamp(self.store.uri)  # before anything is read: see index.mapped
            self.store.refresh()
            if self.persist and self.catalog is not None and SceneCatalog.generation(self.root / CATALOG) != self._generation:
                logger.debug("faiss: %s was rewritten by another process; loading it again", self.root)
                self._forget()
            self._apply(stamp)

    @contextmanager
    def _persisting(self) -> Iterator[bool]:
        """The store's write lock while this accelerator persists; tells whether it may go on.
        With a state loaded it does not wait for another writer (False: it answers from that
        state and follows at its next sync); without one it waits. A store this process may not
        write (read-only) is followed in memory only, from then on."""
        with ExitStack() as stack:
            held = True
            if self.persist:
                try:
                    held = stack.enter_context(store_lock(self.store.uri, wait=self.catalog is None))
                except OSError as exc:
                    logger.warning("%s: cannot write its search files (%s); searching from memory", self.store.uri, exc)
                    self.persist = False
                    self._forget()
            yield held

    def _forget(self) -> None:
        """Drop the loaded state (the next :meth:`_apply` loads it again)."""
        self.catalog, self.columns, self.rows, self.sketch = None, {}, {}, None
        self.texts = SceneTexts(self.root if self.persist else None)
        self._generation = self._manifest = None

    def _apply(self, stamp: dict | None) -> None:
        version = self.store.version
        modalities = self.store.modalities
        loaded = self.catalog is None
        if loaded:
            self._load(modalities)
            self._refill_rows(modalities)
        stamps = self.store.video_stamps()
        known = self.catalog.stamps
        removed = [v for v in known if stamps.get(v) != known[v]]
        added = [v for v in stamps if known.get(v) != stamps[v]]
        changed = bool(removed or added)
        if removed:
            rows = self.catalog.kill_videos(removed)
            for column in self.columns.values():
                column.remove(rows)
        if added:
            self._add(None if not known else added, modalities)
            self.catalog.stamps.update({v: stamps[v] for v in added})
        changed |= self._rebuild_if_needed(modalities)
        changed |= self._sync_sketch(modalities)
        for m, column in self.columns.items():
            self._place(m, column)
        wrote = self.persist and (changed or not (self.root / MANIFEST).exists())
        if wrote:
            self._save(version)
        if self.persist and stamp is not None and stamp != self._facts_stamp():
            write_facts(self.root, self.store, version, stamp)
            self._stamp = stamp
            wrote = True
        if wrote:  # last: it names every file just written, and the store versions they describe
            self._manifest = write_manifest(self.root, lance_versions(stamp) if stamp else {}, self._manifest)
        self._warm_due |= self.options.warm and (loaded or changed)
        self._synced = version

    def warm_up(self) -> None:
        """Map the files' pages in the background (:mod:`index.prefault`) when an open or a
        change left them cold. The retriever calls this once it has answered, so the warm-up
        never competes with the first answer, and a one-query CLI process never pays for it."""
        if self._warm_due and not (self.warming is not None and self.warming.is_alive()):
            self._warm_due = False
            self.warming = warm(self._mapped_arrays())

    def _mapped_arrays(self) -> list[np.ndarray]:
        """What queries read, most read per byte first: the sketch codes, the BM25 postings, then
        the row copies."""
        arrays = [self.sketch.codes.data] if self.sketch is not None else []
        arrays += [getattr(p, name) for p in self.texts.postings if p is not None for name in bm25.ARRAYS]
        return arrays + [rows.data for rows in self.rows.values()]

    def _facts_stamp(self) -> dict | None:
        if self._stamp is None:
            self._stamp = (read_facts(self.root) or {}).get("stamp")
        return self._stamp

    def _add(self, video_ids: list[str] | None, modalities) -> None:
        """Append the scenes of ``video_ids`` (all complete videos when None) to the catalog, then
        stream each modality's vectors into its index one batch at a time: memory stays near one
        column's index, whatever the store's size."""
        scenes = self.store.scene_scalars(video_ids, with_text=True).sort_by([("video_id", "ascending"), ("scene_index", "ascending")])
        rows_added = self.catalog.append(scenes)
        if len(rows_added):
            self.texts.append(int(rows_added[0]), scenes)
        for m in modalities:
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
                    keep = np.flatnonzero(rows >= 0)  # a video completed since the catalog was read: next sync
                    vectors = vector_matrix(batch.column(vector_column(m)).take(pa.array(keep)), self.store.fingerprints[m].dim)
                    self.columns[m].add(vectors, rows[keep])
                    self.rows[m].write(rows[keep], vectors)
            self.rows[m].flush()
            logger.debug("faiss %s: +%d vectors (%s)", m, n_new, self.columns[m].kind)

    def _row_vectors(self, modality: str) -> RowVectors:
        if modality not in self.rows:
            path = None
            if self.persist:
                self.root.mkdir(parents=True, exist_ok=True)
                path = self.root / f"{modality}.f32"
                path.unlink(missing_ok=True)
            self.rows[modality] = RowVectors(self.store.fingerprints[modality].dim, path)
        return self.rows[modality]

    def _refill_rows(self, modalities) -> None:
        """Row copies and texts missing from a loaded state (a store indexed before they
        existed, or a deleted file) are refilled from the store (vectors streamed)."""
        if self.texts is None:
            self.texts = SceneTexts(self.root if self.persist else None)
            scenes = self.store.scene_scalars(None, with_text=True)
            rows = self.catalog.locate(scenes)
            keep = rows >= 0
            rows = rows[keep]
            texts = {c: np.full(len(self.catalog), "", dtype=object) for c in TEXT_COLUMNS}
            texts["moments"] = np.full(len(self.catalog), None, dtype=object)
            for c in texts:  # element by element: a moments list must stay one object
                kept = (v for v, k in zip(scenes.column(c).to_pylist(), keep.tolist()) if k)
                for row, value in zip(rows.tolist(), kept):
                    texts[c][row] = value
            self.texts.clear()  # leftovers of an interrupted merge
            self.texts.append(0, pa.table({c: pa.array(v, TEXT_SCHEMA.field(c).type) for c, v in texts.items()}))
            logger.info("faiss: refilled the texts of %d rows", len(self.catalog))
        for m in modalities:
            if m in self.rows or not len(self.catalog):
                continue
            rows = self._row_vectors(m)
            rows.resize(len(self.catalog))
            for batch in self.store.iter_vectors(m, None):
                found = self.catalog.locate(batch)
                keep = np.flatnonzero(found >= 0)
                if len(keep):
                    rows.write(found[keep], vector_matrix(batch.column(vector_column(m)).take(pa.array(keep)), rows.dim))
            rows.flush()
            logger.info("faiss %s: refilled %d row vectors", m, len(rows))

    def _training_sample(self, modality: str, video_ids, n: int) -> np.ndarray:
        """What a new index is trained on: nothing for flat, a uniform sample for IVF."""
        dim = self.store.fingerprints[modality].dim
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

    def _rebuild_if_needed(self, modalities) -> bool:
        """Compact HNSW tombstones, move a grown flat index to IVF (auto mode), and rebuild an
        index whose file was lost from the row copies. Returns whether any was rebuilt."""
        rebuilt = False
        for m in modalities:
            column = self.columns.get(m)
            if m not in self.rows or (column is None and not self.catalog.has[m].any()):
                continue
            live = np.flatnonzero(self.catalog.alive & self.catalog.has[m])
            if column is None:
                logger.warning("faiss %s: index file missing or unreadable, rebuilding it from the row copies", m)
            grown = column is not None and self.options.kind == "auto" and column.kind == "flat" and len(live) >= 2 * self.options.ivf_threshold
            if column is None or (column.kind == "hnsw" and len(column.dead) > self.options.rebuild_fraction * max(1, len(live))) or grown:
                vectors = self.rows[m].take(live)
                index, kind = build_index(vectors, self.options.kind, self.options)
                self.columns[m] = ColumnIndex(index, kind)
                self.columns[m].add(vectors, live)
                logger.info("rebuilt faiss %s index for %s (%d vectors)", kind, m, len(live))
                rebuilt = True
        return rebuilt

    def _sync_sketch(self, modalities) -> bool:
        """Build the fused sketch once the store is large enough, append new rows to it, and
        retrain it when the store has grown 4x, lost ``rebuild_fraction`` of its rows, or gained
        a modality held by 5 % of its scenes. Returns whether it changed."""
        alive = self.catalog.alive
        n_alive = int(alive.sum())
        wanted = {m for m in modalities if m in self.rows and (self.catalog.has[m] & alive).sum() >= 0.05 * n_alive}
        if not self.options.sketch_threshold or n_alive < self.options.sketch_threshold or not wanted:
            if self.sketch is None:
                return False
            self.sketch = None
            if self.persist:
                FusedSketch.remove(self.root)
            return True
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
            sketch = FusedSketch.train(blocks, len(sample), len(self.catalog), self.root if self.persist else None)
            logger.info("faiss: trained the fused sketch on %d scenes (%s)", len(sample), ", ".join(sketch.modalities))
        if len(sketch) == len(self.catalog) and sketch is self.sketch:
            return False
        for start in range(len(sketch), len(self.catalog), TRAIN_ROWS):
            batch = np.arange(start, min(len(self.catalog), start + TRAIN_ROWS))
            sketch.append(sketch.project({m: self._block(m, batch) for m in sketch.modalities}, len(batch)))
        self.sketch = sketch
        return True

    def _block(self, modality: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The vectors of ``rows`` that have ``modality``, and which rows have it."""
        present = self.catalog.has[modality][rows]
        return self.rows[modality].take(rows[present]), present

    def _place(self, modality: str, column: ColumnIndex) -> None:
        """Mirror on the GPU when one is asked for (``cuda``) or present (``auto``). ``auto`` asks
        faiss-gpu, or torch when it is already loaded: probing CUDA must not cost a torch import."""
        import sys

        import faiss

        from egorag.devices import resolve_device

        if column.gpu is not None or self.options.device == "cpu":
            return
        if self.options.device == "auto":
            gpu_faiss = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
            if not gpu_faiss and "torch" not in sys.modules:
                return
        device = resolve_device(self.options.device)
        if device.startswith("cuda"):
            logger.info("faiss %s: GPU mirror %s", modality, column.attach_gpu(device))

    def _trusted(self) -> bool:
        """Whether the search files on disk may be loaded: their manifest lists them as they are
        (:func:`index.files.check_manifest`) and they describe the store's current versions or
        older ones. Otherwise says why, and they are rebuilt from the store."""
        manifest = read_manifest(self.root)
        if manifest is None and not (self.root / CATALOG).exists():
            return False  # none yet
        problem = f"{self.root / MANIFEST} is missing or unreadable" if manifest is None else check_manifest(self.root, manifest)
        if problem is None:
            now = lance_versions(lance_stamp(self.store.uri) or {})
            behind = {t: (v, now.get(t, 0)) for t, v in manifest.get("versions", {}).items() if now.get(t, 0) < v}
            if behind:
                problem = "the store went back to an older version (" + ", ".join(
                    f"{t} {old} -> {new}" for t, (old, new) in sorted(behind.items())) + "): its newest commits are lost"
        if problem is None:
            self._manifest = manifest
            return True
        logger.warning("%s: search files not used (%s); rebuilding them from the store", self.root, problem)
        return False

    def _load(self, modalities) -> None:
        import faiss

        path = self.root / CATALOG
        if not self.persist or not self._trusted():
            lost = self._catalog_videos(path)
            self._clear_files()
            self.catalog = SceneCatalog.empty(modalities)
            if lost is not None and (gone := sorted(lost - set(self.store.video_stamps()))):
                logger.warning("%d video(s) in the old search files are not in the store: %s; index them again",
                               len(gone), ", ".join(gone[:10]))
            return
        try:
            self.catalog, self._generation = SceneCatalog.load(path)
        except UNREADABLE as exc:  # listed and unchanged, yet unreadable: a bug, not a bad disk
            raise RuntimeError(f"{path} passed its checksum but cannot be read") from exc
        for m in modalities:
            meta_path, index_path = self.root / f"{m}.json", self.root / f"{m}.faiss"
            if meta_path.exists() and index_path.exists():
                reading = meta_path
                try:
                    meta = json.loads(meta_path.read_text())
                    # IVF lists and flat vectors stay in the file, mapped; an HNSW graph is read
                    flags = faiss.IO_FLAG_MMAP | (faiss.IO_FLAG_MMAP_IFC if meta["kind"] == "flat" else 0)
                    reading = index_path
                    index = faiss.read_index(str(index_path), flags)
                except UNREADABLE as exc:
                    logger.warning("%s cannot be read (%s); rebuilding the %s index", reading, exc, m)  # from the row copies
                else:
                    mapped = str(index_path) if meta["kind"] in ("ivf", "flat") else None
                    self.columns[m] = ColumnIndex(index, meta["kind"], set(meta.get("dead", [])), mapped, dirty=False)
            rows = RowVectors.open(self.root / f"{m}.f32", self.store.fingerprints[m].dim, len(self.catalog))
            if rows is not None:
                self.rows[m] = rows
        self.texts = SceneTexts.open(self.root, len(self.catalog))  # None: refilled
        self.sketch = FusedSketch.load(self.root)  # None: rebuilt when wanted

    def _catalog_videos(self, path: Path) -> set[str] | None:
        """The videos an old catalog names (to say which ones the store lost), if it reads."""
        try:
            return set(SceneCatalog.load(path)[0].stamps) if path.exists() else None
        except UNREADABLE:
            return None

    def _clear_files(self) -> None:
        """Remove the search files (not the readers' kept files): they are written anew."""
        if not self.persist or not self.root.exists():
            return
        for path in self.root.iterdir():
            if path.name in ("kept", LOCK_NAME):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self.texts = SceneTexts(self.root)
        self._manifest = None

    def _save(self, version: int) -> None:
        import faiss

        self.root.mkdir(parents=True, exist_ok=True)
        written = [m for m, column in self.columns.items() if column.dirty or not (self.root / f"{m}.faiss").exists()]
        for m in written:
            column = self.columns[m]
            with atomic_path(self.root / f"{m}.faiss") as tmp:
                faiss.write_index(column.index, str(tmp))
            with atomic_path(self.root / f"{m}.json") as tmp:
                tmp.write_text(json.dumps({"kind": column.kind, "dead": sorted(column.dead)}))
            column.dirty = False
        if self.sketch is not None:
            self.sketch.save(self.root)
        self._generation = self.catalog.save(self.root / CATALOG, version)  # last: it names the state
