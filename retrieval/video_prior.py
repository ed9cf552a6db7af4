"""The video level of the hierarchy: every complete video's global vectors, and its prior for a query.

A video's prior for a query is its similarity to the query in each modality, standardised against
the collection's videos (mean and spread from a fixed sample of at most ``VIDEO_SAMPLE`` videos: exact
for smaller collections) and fused with the retrieval weights. The retriever needs it for two
things only: the best videos (whose scenes are searched exhaustively) and the videos of its scene
candidates. Scanning every video's float32 vectors for each query costs ~10 ms at 20,000 videos
(memory-bound), so above ``exact_below`` videos a shortlist comes from a sketch: each modality's
vectors projected on its top ``SKETCH_DIMS`` principal components (from the calibration sample),
concatenated, so that the whole fused prior of every video is one small matrix-vector product
(a FAISS scan of float16 values). The shortlist is then re-scored exactly; candidates' videos
are always scored exactly. What is derived from the vectors (moments, axes, sketch: 0.6 s at
20,000 videos) is computed once per search snapshot (:func:`index.catalog.derive_video_level`),
so a restarted process only maps it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from egorag.stats import Moments
from index.catalog import EXACT_BELOW, derive_video_level
from retrieval.fusion import Calibration, weighted_fusion

logger = logging.getLogger("egorag")

SHORTLIST = 8  # the sketch shortlists this many videos per video wanted
STD_FLOOR = 1e-9  # videos that do not differ for a query in a modality give no prior there


class VideoPrior:
    def __init__(self, ids: Sequence[str], vectors: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray],
                 derived: Mapping[str, np.ndarray] | None = None, exact_below: int = EXACT_BELOW):
        """``ids``: every complete video; ``vectors[m]``: their global vectors for modality ``m``,
        one row per id (zeros where ``present[m]`` is False: the video has none). Use :meth:`of`
        for vectors as the store lists them. ``derived``: what a snapshot derived from these
        vectors (:func:`index.catalog.derive_video_level`); derived here when not given."""
        self.ids = np.asarray(ids, dtype=object)
        self.position = {v: i for i, v in enumerate(self.ids)}
        if derived is None:
            derived = derive_video_level(vectors, present, exact_below)
        used = sorted(m for m in vectors if f"{m}.mean" in derived)  # the sketch's blocks are in this order
        self.vectors = {m: vectors[m] for m in used}  # modality -> (n_videos, dim); zeros where absent
        self.present = {m: np.asarray(present[m], bool) for m in used}
        self._moments = {m: Moments(derived[f"{m}.mean"], derived[f"{m}.cov"], int(derived[f"{m}.n"])) for m in used}
        self._bases = {m: (derived[f"{m}.centre"], derived[f"{m}.axes"]) for m in used if f"{m}.axes" in derived}
        self._sketch = _flat_index(np.asarray(derived["sketch"], np.float32)) if "sketch" in derived else None

    @classmethod
    def of(cls, per_modality: Mapping[str, tuple[Sequence[str], np.ndarray]], video_ids=(), exact_below: int = EXACT_BELOW) -> VideoPrior:
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
        return cls(ids, vectors, present, exact_below=exact_below)

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


def _top(index, query: np.ndarray, n: int) -> np.ndarray:
    from index.vectors import single_threaded

    with single_threaded(True):
        _, found = index.search(np.ascontiguousarray(query[None, :], dtype=np.float32), n)
    return found[0][found[0] >= 0]
