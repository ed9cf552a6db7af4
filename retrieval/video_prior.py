"""The video level of the hierarchy: every complete video's global vectors, and its prior for a query.

A video's prior for a query is its similarity to the query in each modality, standardised against
the collection's videos (mean and spread from a fixed sample of at most ``SAMPLE`` videos: exact
for smaller collections) and fused with the retrieval weights. The retriever needs it for two
things only: the best videos (whose scenes are searched exhaustively) and the videos of its scene
candidates. Scanning every video's float32 vectors for each query costs ~10 ms at 20,000 videos
(memory-bound), so above ``exact_below`` videos the best ones come from an 8-bit scalar-quantised
FAISS scan (4x less memory traffic, built in milliseconds when the store is opened) and are then
re-scored exactly; candidates' videos are always scored exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from index.faiss import single_threaded
from retrieval.fusion import Calibration, weighted_fusion

SAMPLE = 4096


class VideoPrior:
    def __init__(self, per_modality: Mapping[str, tuple[Sequence[str], np.ndarray]], video_ids=(), exact_below: int = 2048):
        """``per_modality``: modality -> (video ids, their global vectors), as
        :meth:`index.lance.LanceSceneStore.video_vectors` returns them; ``video_ids``: videos
        that have no global vector at all (they get a neutral prior)."""
        self.ids = np.asarray(sorted({v for ids, _ in per_modality.values() for v in ids} | set(video_ids)), dtype=object)
        self.position = {v: i for i, v in enumerate(self.ids)}
        self.vectors: dict[str, np.ndarray] = {}  # modality -> (n_videos, dim); zeros where absent
        self.present: dict[str, np.ndarray] = {}
        self._sample: dict[str, np.ndarray] = {}
        self._quantized: dict[str, tuple[object, np.ndarray]] = {}  # modality -> (index, positions)
        rng = np.random.default_rng(0)
        for m, (ids, vectors) in per_modality.items():
            if len(ids) < 2:  # one video cannot be standardised against the others
                continue
            positions = np.array([self.position[v] for v in ids], dtype=np.int64)
            full = np.zeros((len(self.ids), vectors.shape[1]), np.float32)
            full[positions] = vectors
            self.vectors[m] = full
            self.present[m] = np.zeros(len(self.ids), bool)
            self.present[m][positions] = True
            sample = positions if len(positions) <= SAMPLE else np.sort(rng.choice(positions, SAMPLE, replace=False))
            self._sample[m] = full[sample]
            if len(positions) >= exact_below:
                self._quantized[m] = (_sq8(vectors), positions)

    @classmethod
    def from_store(cls, store, exact_below: int = 2048) -> VideoPrior:
        """Every complete video (with or without global vectors) and its vectors."""
        return cls({m: store.video_vectors(m) for m in store.modalities}, store.complete_ids(), exact_below)

    def __len__(self) -> int:
        return len(self.ids)

    def modalities(self, qv: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> list[str]:
        return [m for m in qv if weights.get(m, 0) > 0 and m in self.vectors]

    def calibrations(self, qv: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> dict[str, Calibration]:
        return {m: _calibration(self._sample[m] @ qv[m]) for m in self.modalities(qv, weights)}

    def prior(self, qv, weights, calibrations: Mapping[str, Calibration], positions: np.ndarray) -> np.ndarray:
        """The fused, standardised prior of the videos at ``positions`` (a video without a
        modality counts as average there)."""
        z = {}
        for m, cal in calibrations.items():
            sims = self.vectors[m][positions] @ qv[m]
            z[m] = np.where(self.present[m][positions], (sims - cal.mean) / cal.std if cal.std > 0 else 0.0, np.nan)
        return weighted_fusion(z, weights) if z else np.zeros(len(positions))

    def best(self, qv, weights, calibrations: Mapping[str, Calibration], n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` videos with the highest prior (positions, priors): every video scored when
        few, else each modality's best ``4 n`` from the quantised scan, re-scored exactly."""
        if not calibrations or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0)
        if not self._quantized:
            shortlist = np.arange(len(self.ids))
        else:
            parts = []
            for m in calibrations:
                if m in self._quantized:
                    index, positions = self._quantized[m]
                    with single_threaded(True):
                        _, found = index.search(np.ascontiguousarray(qv[m][None], np.float32), min(4 * n, len(positions)))
                    parts.append(positions[found[0][found[0] >= 0]])
                else:
                    parts.append(np.flatnonzero(self.present[m]))
            shortlist = np.unique(np.concatenate(parts))
        priors = self.prior(qv, weights, calibrations, shortlist)
        top = np.argsort(-priors, kind="stable")[:n]
        return shortlist[top], priors[top]

    def positions_of(self, video_ids: Sequence) -> np.ndarray:
        """Positions of ``video_ids`` (-1 for a video not in the store, e.g. half-written)."""
        return np.fromiter((self.position.get(v, -1) for v in video_ids), np.int64, len(video_ids))


def _calibration(sims: np.ndarray) -> Calibration:
    """Like :class:`Calibration` but without its floor: no spread means no prior (all zero)."""
    std = float(np.std(sims)) if len(sims) > 1 else 0.0
    return Calibration(float(np.mean(sims)) if len(sims) else 0.0, std if std > 1e-9 else 0.0)


def _sq8(vectors: np.ndarray):
    import faiss

    index = faiss.IndexScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index.train(vectors)
    index.add(vectors)
    return index
