"""The video level of the hierarchy: every complete video's global vectors, and its prior for a query.

A video's prior for a query is its similarity to the query in each modality, standardised against
the collection's videos (mean and spread from a fixed sample of at most ``SAMPLE`` videos: exact
for smaller collections) and fused with the retrieval weights. The retriever needs it for two
things only: the best videos (whose scenes are searched exhaustively) and the videos of its scene
candidates. Scanning every video's float32 vectors for each query costs ~10 ms at 20,000 videos
(memory-bound), so above ``exact_below`` videos a shortlist comes from a sketch: each modality's
vectors projected on its top ``SKETCH_DIMS`` principal components (from the calibration sample),
concatenated, so that the whole fused prior of every video is one small matrix-vector product
(a FAISS scan of float16 values). The shortlist is then re-scored exactly; candidates' videos
are always scored exactly. What a build derives from the vectors (moments, axes, sketch: 0.6 s
at 20,000 videos) can be handed to the next build on the same videos (:meth:`VideoPrior.derived`),
which the retriever keeps beside the FAISS indexes for a restarted process (:mod:`index.kept`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from egorag.stats import Moments
from retrieval.fusion import Calibration, weighted_fusion

logger = logging.getLogger("egorag")

SAMPLE = 4096
SKETCH_DIMS = 64  # principal components per modality in the shortlist sketch
SHORTLIST = 8  # the sketch shortlists this many videos per video wanted
STD_FLOOR = 1e-9  # videos that do not differ for a query in a modality give no prior there


class VideoPrior:
    def __init__(self, ids: Sequence[str], vectors: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray],
                 exact_below: int = 2048, derived: Mapping[str, np.ndarray] | None = None):
        """``ids``: every complete video; ``vectors[m]``: their global vectors for modality ``m``,
        one row per id (zeros where ``present[m]`` is False: the video has none). Use :meth:`of`
        for vectors as the store lists them. ``derived``: :meth:`derived` of an earlier build on
        the same videos, so that its moments, axes and sketch are not computed again (ignored
        when it does not match)."""
        self.ids = np.asarray(ids, dtype=object)
        self.position = {v: i for i, v in enumerate(self.ids)}
        self.vectors: dict[str, np.ndarray] = {}  # modality -> (n_videos, dim); zeros where absent
        self.present: dict[str, np.ndarray] = {}
        self._moments: dict[str, Moments] = {}
        self._bases: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # modality -> (mean, components)
        self._sketch = None  # a FAISS flat index of (n_videos, sum of components), when many videos
        for m in vectors:
            if present[m].sum() >= 2:  # one video cannot be standardised against the others
                self.vectors[m], self.present[m] = vectors[m], np.asarray(present[m], bool)
        sketched = len(self.ids) >= exact_below and bool(self.vectors)
        if derived is not None and not self._matches(derived, sketched):
            logger.debug("video level: the kept state is for other videos; deriving it again")
            derived = None
        self.reused = derived is not None  # built from kept state, not derived here
        if derived is not None:
            self._moments = {m: Moments(derived[f"{m}.mean"], derived[f"{m}.cov"], int(derived[f"{m}.n"])) for m in self.vectors}
            if sketched:
                self._bases = {m: (derived[f"{m}.centre"], derived[f"{m}.axes"]) for m in self.vectors}
                self._sketch = _flat_index(derived["sketch"])
            return
        rng = np.random.default_rng(0)
        for m, full in self.vectors.items():
            positions = np.flatnonzero(self.present[m])
            sample = positions if len(positions) <= SAMPLE else np.sort(rng.choice(positions, SAMPLE, replace=False))
            self._moments[m] = Moments.of(full[sample])
        if sketched:
            parts = []
            for m, full in self.vectors.items():
                moments = self._moments[m]
                mean = moments.mean.astype(np.float32)
                components = moments.principal_axes(SKETCH_DIMS)
                self._bases[m] = (mean, components)
                parts.append(np.where(self.present[m][:, None], (full - mean) @ components.T, 0.0).astype(np.float32))
            self._sketch = _flat_index(np.concatenate(parts, axis=1))

    @classmethod
    def of(cls, per_modality: Mapping[str, tuple[Sequence[str], np.ndarray]], video_ids=(), exact_below: int = 2048,
           derived: Mapping[str, np.ndarray] | None = None) -> VideoPrior:
        """From ``per_modality``: modality -> (video ids, their global vectors), as
        :meth:`index.lance.LanceSceneStore.video_vectors` lists them; ``video_ids``: videos that
        have no global vector at all (they get a neutral prior)."""
        ids = sorted({v for found, _ in per_modality.values() for v in found} | set(video_ids))
        position = {v: i for i, v in enumerate(ids)}
        vectors, present = {}, {}
        for m, (found, x) in per_modality.items():
            at = np.fromiter((position[v] for v in found), np.int64, len(found))
            vectors[m] = np.zeros((len(ids), x.shape[1] if x.ndim == 2 else 0), np.float32)
            vectors[m][at] = x
            present[m] = np.zeros(len(ids), bool)
            present[m][at] = True
        return cls(ids, vectors, present, exact_below, derived)

    @classmethod
    def from_store(cls, store, exact_below: int = 2048, derived: Mapping[str, np.ndarray] | None = None) -> VideoPrior:
        """Every complete video (with or without global vectors) and its vectors: as one matrix
        per modality when the store has them so (the FAISS accelerator's mapped record of the
        videos, :meth:`index.mapped.MappedStore.video_matrices`: nothing is copied), else as
        listed by modality."""
        matrices = store.video_matrices() if hasattr(store, "video_matrices") else None
        if matrices is not None:
            ids, per_modality = matrices
            return cls(ids, {m: x for m, (x, _) in per_modality.items()}, {m: p for m, (_, p) in per_modality.items()},
                       exact_below, derived)
        return cls.of({m: store.video_vectors(m) for m in store.modalities}, store.complete_ids(), exact_below, derived)

    def derived(self) -> dict[str, np.ndarray]:
        """What this build derived from the videos' vectors (moments, principal axes, the
        shortlist sketch): pass it to the next build on the same videos, e.g. in a restarted
        process (:mod:`index.kept`), which then costs no more than mapping the vectors."""
        out = {"videos": np.array(len(self.ids)), "digest": _digest(self.ids)}
        for m, moments in self._moments.items():
            out.update({f"{m}.present": np.array(int(self.present[m].sum())), f"{m}.mean": moments.mean,
                        f"{m}.cov": moments.cov, f"{m}.n": np.array(moments.n)})
        for m, (centre, axes) in self._bases.items():
            out.update({f"{m}.centre": centre, f"{m}.axes": axes})
        if self._sketch is not None:
            out["sketch"] = _sketch_rows(self._sketch)
        return out

    def _matches(self, derived: Mapping[str, np.ndarray], sketched: bool) -> bool:
        try:
            same = int(derived["videos"]) == len(self.ids) and bytes(derived["digest"]) == bytes(_digest(self.ids))
            same = same and all(int(derived[f"{m}.present"]) == int(p.sum()) for m, p in self.present.items())
            return same and set(self.vectors) == {k[: -len(".mean")] for k in derived if k.endswith(".mean")} and (not sketched or "sketch" in derived)
        except (KeyError, TypeError, ValueError):
            return False

    def __len__(self) -> int:
        return len(self.ids)

    def modalities(self, qv: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> list[str]:
        return [m for m in qv if weights.get(m, 0) > 0 and m in self.vectors]

    def calibrations(self, qv: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> dict[str, Calibration]:
        return {m: Calibration.from_moments(self._moments[m], qv[m], floor=0.0) for m in self.modalities(qv, weights)}

    def prior(self, qv, weights, calibrations: Mapping[str, Calibration], positions: np.ndarray) -> np.ndarray:
        """The fused, standardised prior of the videos at ``positions`` (a video without a
        modality counts as average there)."""
        z = {}
        for m, cal in calibrations.items():
            sims = self.vectors[m][positions] @ qv[m]
            z[m] = np.where(self.present[m][positions], (sims - cal.mean) / cal.std if cal.std > STD_FLOOR else 0.0, np.nan)
        return weighted_fusion(z, weights) if z else np.zeros(len(positions))

    def best(self, qv, weights, calibrations: Mapping[str, Calibration], n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` videos with the highest prior (positions, priors): every video scored when
        few, else the best ``SHORTLIST * n`` by the sketch, re-scored exactly."""
        if not calibrations or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0)
        if self._sketch is None or SHORTLIST * n >= len(self.ids):
            shortlist = np.arange(len(self.ids))
        else:
            # the fused prior is linear in each modality's similarity: weight w / std, projected
            total = sum(weights[m] for m in calibrations)
            parts = []
            for m, (_, components) in self._bases.items():
                cal = calibrations.get(m)
                scale = weights[m] / total / cal.std if cal is not None and cal.std > STD_FLOOR else 0.0
                parts.append(scale * (components @ qv[m]) if scale else np.zeros(len(components)))
            shortlist = np.sort(_top(self._sketch, np.concatenate(parts), SHORTLIST * n))
        priors = self.prior(qv, weights, calibrations, shortlist)
        top = np.argsort(-priors, kind="stable")[:n]
        return shortlist[top], priors[top]

    def positions_of(self, video_ids: Sequence) -> np.ndarray:
        """Positions of ``video_ids`` (-1 for a video not in the store, e.g. half-written)."""
        return np.fromiter((self.position.get(v, -1) for v in video_ids), np.int64, len(video_ids))


def _flat_index(rows: np.ndarray):
    """An inner-product index of ``rows`` stored as float16: FAISS's single-threaded scan and
    top-k of a 20,000 x 256 sketch took half the time of numpy's product and argpartition, and
    float16 halves it again (1.67 -> 0.92 ms, the same top 160 on random data: the scan is
    memory-bound). The shortlist it gives is re-scored exactly."""
    import faiss

    index = faiss.IndexScalarQuantizer(rows.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    index.add(np.ascontiguousarray(rows, dtype=np.float32))
    return index


def _sketch_rows(index) -> np.ndarray:
    """The float16 rows an index of :func:`_flat_index` holds (as float16: what it scans)."""
    import faiss

    return faiss.vector_to_array(index.codes).view(np.float16).reshape(index.ntotal, index.d)


def _digest(ids: np.ndarray) -> np.ndarray:
    """A digest of the video ids, in order (what derived state is checked against)."""
    return np.frombuffer(hashlib.blake2b("\n".join(ids).encode(), digest_size=16).digest(), np.uint8)


def _top(index, query: np.ndarray, n: int) -> np.ndarray:
    from index.faiss_index import single_threaded

    with single_threaded(True):
        _, found = index.search(np.ascontiguousarray(query[None, :], dtype=np.float32), n)
    return found[0][found[0] >= 0]
