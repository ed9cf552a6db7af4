"""The query side of the FAISS accelerator: the search backend the retriever talks to.

:class:`FaissQueries` answers over the state that :class:`index.faiss.FaissAccelerator` keeps in
step with the store (the catalog, the per-modality indexes and row copies, the texts and the
fused sketch); keys are catalog rows. See :mod:`retrieval.hierarchical` for how they are used.
"""

from __future__ import annotations

import time

import numpy as np

from egorag.filters import SceneFilter
from egorag.schema import Scene
from index import kept
from index.base import ColumnHits
from index.catalog import SceneMeta

FOLLOW_S = 0.5  # how stale the store contract's search may be about other processes' writes


class FaissQueries:
    """The retriever's search backend over a :class:`index.faiss.FaissAccelerator`'s state."""

    def search_keys(self, modality: str, query: np.ndarray, k: int, where: SceneFilter | None = None) -> list[tuple[int, float]]:
        """Top-k catalog rows and their similarities (approximate for IVF: the retriever
        re-scores candidates exactly). Call :meth:`sync` after the store changes (the retriever
        does, once per query)."""
        if self.catalog is None:
            self.sync()
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
            if rows is not None and len(rows) <= self.options.exact_below:  # few rows: score exactly
                sims = self.rows[modality].take(rows) @ np.asarray(query, np.float32).reshape(-1)
                top = np.argsort(-sims)[:k]
                return [(int(rows[i]), float(sims[i])) for i in top]
            if allowed is None:
                allowed = self.catalog.mask(where)
        if allowed is None and column.dead:  # HNSW keeps deleted rows: search the alive ones
            allowed = self.catalog.alive
        scores, rows = column.search(query, k, allowed, self.options)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]

    def search(self, modality: str, vectors: np.ndarray, k: int, where: SceneFilter | None = None) -> list[ColumnHits]:
        """The SceneStore search contract: scene ids and similarities. It sees this process's
        writes at once and other processes' within ``FOLLOW_S``."""
        self._follow()
        out = []
        for q in np.atleast_2d(np.asarray(vectors, dtype=np.float32)):
            rows = np.array([r for r, _ in self.search_keys(modality, q[None, :], k, where)], dtype=np.int64)
            sims = self.rows[modality].take(rows) @ q if len(rows) else np.zeros(0, np.float32)  # exact (IVF codes are 8-bit)
            order = np.argsort(-sims, kind="stable")
            out.append(list(zip(self.catalog.scene_ids(rows[order]), sims[order].tolist())))
        return out

    def _follow(self) -> None:
        """:meth:`sync` when this process wrote to the store (its handle's version moved) or
        ``FOLLOW_S`` has passed since the last sync: looking for other processes' writes costs
        ~1 ms (two directory listings and two LanceDB refreshes), a third of a search of a
        1M-row IVF column, and the retriever checks no more often either."""
        if self._synced is None or time.monotonic() - self._synced_at >= FOLLOW_S or self.store.version != self._synced:
            self.sync()

    @property
    def sketch_modalities(self) -> tuple[str, ...]:
        """The modalities the fused sketch covers (none: no sketch)."""
        return self.sketch.modalities if self.sketch is not None else ()

    def sketch_query(self, parts) -> np.ndarray:
        """The sketch's query vector from each modality's query scaled by its weight over its
        calibrated spread (``w_m / sigma_m q_m``)."""
        return self.sketch.query(parts)

    def sketch_search(self, queries: np.ndarray, n: int) -> list[list[int]]:
        """For each sketch query (a row of ``queries``), the ``n`` alive rows with the highest
        approximate fused score."""
        return [rows.tolist() for rows in self.sketch.search(queries, n, self.catalog.alive, self.options.split_scan)]

    def sketch_scores(self, query: np.ndarray, keys) -> np.ndarray:
        """Approximate fused scores of ``keys`` (8-bit codes; finer than the search's)."""
        return self.sketch.scores(query, np.asarray(list(keys), np.int64))

    def meta(self, keys) -> list[SceneMeta]:
        return self.catalog.meta(list(keys))

    def filter_keys(self, where: SceneFilter, limit: int) -> list[int] | None:
        """Every alive row passing a filter that names videos; None when more than ``limit``."""
        if self.catalog is None:
            self.sync()
        rows = self.catalog.rows(where)
        if rows is None or len(rows) > limit:
            return None
        return rows.tolist()

    def videos_of(self, keys) -> np.ndarray:
        """Each key's video id."""
        return self.catalog.video_ids(list(keys))

    def video_codes(self, keys) -> tuple[np.ndarray, np.ndarray]:
        """Each key's video as a code into a name table (the table is replaced when it changes)."""
        return self.catalog.video_code[np.asarray(keys, dtype=np.int64)], self.catalog.video_names

    def vectors(self, modality: str, keys) -> np.ndarray:
        """Candidate vectors, NaN rows where a scene has none for ``modality``."""
        keys = np.asarray(list(keys), dtype=np.int64)
        out = np.full((len(keys), self.store.fingerprints[modality].dim), np.nan, dtype=np.float32)
        if modality in self.rows and len(keys):
            present = self.catalog.has[modality][keys] & self.catalog.alive[keys]
            if present.any():
                out[present] = self.rows[modality].take(keys[present])
        return out

    def background(self, modality: str, n: int) -> np.ndarray:
        """A fixed random sample of ``n`` vectors of the modality (the retriever caches it)."""
        rows = np.flatnonzero(self.catalog.alive & self.catalog.has[modality])
        if len(rows) > n:
            rows = np.sort(np.random.default_rng(0).choice(rows, n, replace=False))
        return self.rows[modality].take(rows) if modality in self.rows and len(rows) else np.zeros((0, 1), np.float32)

    def background_moments(self, modality: str, n: int):
        """The mean and covariance of :meth:`background`'s sample (the retriever's
        calibration), kept for the next process."""
        from egorag.stats import Moments

        name = f"background-{modality}"
        arrays = self.load_derived(name, n)
        if arrays is not None:
            return Moments(arrays["mean"], arrays["cov"], int(arrays["n"]))
        moments = Moments.of(self.background(modality, n))
        self.keep_derived(name, {"mean": moments.mean, "cov": moments.cov, "n": np.array(moments.n)}, n)
        return moments

    def load_derived(self, name: str, *key: int) -> dict[str, np.ndarray] | None:
        """Arrays derived from the store's current state and kept under ``name`` (and ``key``)
        by :meth:`keep_derived`, in this process or an earlier one (:mod:`index.kept`); None
        when there are none for this state."""
        return kept.load(kept.path_for(self.root, name), self._state_key(key)) if self.persist else None

    def keep_derived(self, name: str, arrays, *key: int) -> None:
        """Keep ``arrays``, derived from the store's current state, for the next process."""
        if self.persist:
            kept.save(kept.path_for(self.root, name), self._state_key(key), arrays)

    def _state_key(self, extra) -> np.ndarray:
        return np.array([self.version, len(self.catalog), int(self.catalog.alive.sum()), *extra], np.int64)

    def text_search(self, query: str, k: int, where: SceneFilter | None = None) -> list[tuple[int, float]]:
        """BM25 over the scenes' transcripts and captions (:mod:`index.bm25`): the best ``k``
        alive rows passing ``where``, with their scores."""
        if self.catalog is None:
            self.sync()
        allowed = self.catalog.mask(where) if where is not None and not where.is_empty() else self.catalog.alive
        return self.texts.search(query, k, allowed, self.catalog.alive)

    def scenes(self, keys, with_vectors: bool = False) -> list:
        """Scenes with their texts, from the catalog and the mapped text segments (vectors, when
        asked for, from the store)."""
        if with_vectors:
            return self.store.get_scenes(self.catalog.scene_ids(list(keys)), with_vectors=True)
        keys = list(keys)
        texts, moments = self.texts.get(keys), self.texts.moments(keys)
        return [
            Scene(m.scene_id, m.video_id, m.video_path, m.scene_index, m.start, m.end, transcript=t, caption=c, screen_text=s,
                  moments=when)
            for m, (t, c, s), when in zip(self.catalog.meta(keys), texts, moments)
        ]

    def keyframes(self, keys) -> dict:
        return self.store.keyframes(self.catalog.scene_ids(list(keys)))
