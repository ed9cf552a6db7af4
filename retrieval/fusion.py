"""Pure fusion functions: calibration, weighted sum, reciprocal-rank fusion, adjacent-scene merge.
No I/O, no models: arrays aligned over the same candidates in, arrays out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from egorag.stats import Moments


@dataclass(frozen=True)
class Calibration:
    """Mean and spread of one query's similarity to a modality's whole collection."""

    mean: float
    std: float

    @classmethod
    def from_moments(cls, moments: Moments, q: np.ndarray, floor: float = 1e-3) -> Calibration:
        """``q``'s mean and spread against the sample; the spread never below ``floor`` (with
        ``floor = 0`` a sample without spread gives 0: the caller decides what that means)."""
        if moments.n == 0:
            return cls(0.0, 1.0)
        mean, std = moments.similarity_stats(q)
        return cls(mean, max(std, floor))

    def __call__(self, sim: float) -> float:
        return (sim - self.mean) / self.std


def bm25_scale(scores: np.ndarray, z: float) -> np.ndarray:
    """BM25 has no absolute scale: divide by the query's best match and map that best match to
    ``z`` standard deviations. NaN (no keyword match) stays NaN."""
    scores = np.asarray(scores, dtype=np.float64)
    top = np.nanmax(scores) if not np.isnan(scores).all() else 0.0
    return z * scores / top if top > 0 else np.full_like(scores, np.nan)


def weighted_contributions(calibrated: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Each source's share of the weighted mean of calibrated score arrays (aligned over the same
    candidates): ``w_s * z_s / sum(w)``. NaN ("no such score") counts as 0, the collection
    average. The shares add up to :func:`weighted_fusion`."""
    sources = [s for s in calibrated if weights.get(s, 0.0) > 0]
    total = sum(weights[s] for s in sources) or 1.0
    return {s: weights[s] * np.nan_to_num(calibrated[s], nan=0.0) / total for s in sources}


def weighted_fusion(calibrated: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted mean of calibrated per-source score arrays: the sum of :func:`weighted_contributions`."""
    return total(weighted_contributions(calibrated, weights), _length(calibrated))


def rrf_contributions(scores: Mapping[str, np.ndarray], weights: Mapping[str, float], k: int = 60) -> dict[str, np.ndarray]:
    """Each source's term of weighted reciprocal-rank fusion, ``w_s / (k + rank_s)``: rank 1 is
    the source's highest score; a candidate without a score (NaN) gets 0 from that source."""
    out = {}
    for s, values in scores.items():
        w = weights.get(s, 0.0)
        present = ~np.isnan(values)
        if w <= 0 or not present.any():
            continue
        order = np.flatnonzero(present)[np.argsort(-values[present], kind="stable")]
        out[s] = np.zeros(len(values))
        out[s][order] = w / (k + np.arange(1, len(order) + 1))
    return out


def rrf_fusion(scores: Mapping[str, np.ndarray], weights: Mapping[str, float], k: int = 60) -> np.ndarray:
    """Weighted reciprocal-rank fusion: the sum of :func:`rrf_contributions`."""
    return total(rrf_contributions(scores, weights, k), _length(scores))


def total(parts: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """The fused score of ``n`` candidates: the sum of the sources' contributions."""
    return np.sum(list(parts.values()), axis=0) if parts else np.zeros(n)


def _length(arrays: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(arrays.values()))) if arrays else 0


@dataclass(frozen=True)
class Span:
    """A ranked scene to merge: ``key`` groups scenes of one video, ``index`` orders them."""

    item: str
    key: str
    index: int
    score: float


def merge_adjacent(ranked: Sequence[Span], keep: float = 0.8) -> list[list[Span]]:
    """Group each hit with adjacent scenes of the same video that also rank high.

    A scene's standing is its score in standard deviations above the mean of all ``ranked``
    scores: the same rule whatever the fusion's scale (RRF's scores are compressed near each
    other, weighted fusion's are z-scores that may be negative). Walking the ranking best first,
    a scene joins a group when it is next to it (index +-1 of the group's ends) and its standing
    is at least ``keep`` times the group best's, which stands above the mean. Returns groups in
    rank order, each sorted by index.
    """
    scores = np.array([s.score for s in ranked], np.float64)
    spread = float(scores.std()) if len(scores) > 1 else 0.0
    mean = float(scores.mean()) if len(scores) else 0.0

    def standing(span: Span) -> float:
        return (span.score - mean) / spread if spread > 0 else 0.0

    groups: list[list[Span]] = []
    where: dict[tuple[str, int], int] = {}
    for span in ranked:
        target = None
        for neighbour in (span.index - 1, span.index + 1):
            g = where.get((span.key, neighbour))
            best = standing(groups[g][0]) if g is not None else 0.0
            if g is not None and best > 0 and standing(span) >= keep * best:
                target = g
                break
        if target is None:
            groups.append([span])
            target = len(groups) - 1
        else:
            groups[target].append(span)
        where[(span.key, span.index)] = target
    return [sorted(g, key=lambda s: s.index) for g in groups]
