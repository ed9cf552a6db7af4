"""Pure fusion functions: calibration, weighted sum, reciprocal-rank fusion, adjacent-scene merge.
No I/O, no models: ids and numbers in, ids and numbers out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Scores = Mapping[str, float]


@dataclass(frozen=True)
class Calibration:
    """Mean and spread of one query's similarity to a modality's whole collection."""

    mean: float
    std: float

    @classmethod
    def from_background(cls, sims: np.ndarray, floor: float = 1e-3) -> Calibration:
        if sims.size == 0:
            return cls(0.0, 1.0)
        return cls(float(np.mean(sims)), max(float(np.std(sims)), floor))

    def __call__(self, sim: float) -> float:
        return (sim - self.mean) / self.std


def zscores(values: Scores) -> dict[str, float]:
    """Standardise scores across their keys (all zero when fewer than two or no spread)."""
    if len(values) < 2:
        return {k: 0.0 for k in values}
    arr = np.fromiter(values.values(), dtype=np.float64)
    std = float(arr.std())
    if std < 1e-9:
        return {k: 0.0 for k in values}
    mean = float(arr.mean())
    return {k: (v - mean) / std for k, v in values.items()}


def weighted_fusion(calibrated: Mapping[str, Scores], weights: Mapping[str, float]) -> dict[str, float]:
    """Weighted mean of calibrated per-source scores. A missing score counts as 0 (average)."""
    sources = [s for s in calibrated if weights.get(s, 0.0) > 0]
    total = sum(weights[s] for s in sources) or 1.0
    ids = set().union(*(calibrated[s].keys() for s in sources)) if sources else set()
    return {i: sum(weights[s] * calibrated[s].get(i, 0.0) for s in sources) / total for i in ids}


def rrf_fusion(rankings: Mapping[str, Sequence[str]], weights: Mapping[str, float], k: int = 60) -> dict[str, float]:
    """Weighted reciprocal-rank fusion: sum over sources of ``w / (k + rank)`` (rank from 1)."""
    fused: dict[str, float] = {}
    for source, ranked in rankings.items():
        w = weights.get(source, 0.0)
        if w <= 0:
            continue
        for rank, item in enumerate(ranked, start=1):
            fused[item] = fused.get(item, 0.0) + w / (k + rank)
    return fused


def bm25_scale(scores: Scores) -> dict[str, float]:
    """BM25 scores to [0, 1] by the query's best match (BM25 has no absolute scale)."""
    if not scores:
        return {}
    top = max(scores.values())
    return {k: (v / top if top > 0 else 0.0) for k, v in scores.items()}


@dataclass(frozen=True)
class Span:
    """A ranked scene to merge: ``key`` groups scenes of one video, ``index`` orders them."""

    item: str
    key: str
    index: int
    score: float


def merge_adjacent(ranked: Sequence[Span], keep: float = 0.8) -> list[list[Span]]:
    """Group each hit with adjacent scenes of the same video that also rank high.

    Walks the ranking best first; a scene joins a group when it is next to it (index +-1 of the
    group's ends) and scores at least ``keep`` times the group's best. Returns groups in rank order,
    each sorted by index.
    """
    groups: list[list[Span]] = []
    where: dict[tuple[str, int], int] = {}
    for span in ranked:
        target = None
        for neighbour in (span.index - 1, span.index + 1):
            g = where.get((span.key, neighbour))
            if g is not None and span.score >= keep * groups[g][0].score:
                target = g
                break
        if target is None:
            groups.append([span])
            target = len(groups) - 1
        else:
            groups[target].append(span)
        where[(span.key, span.index)] = target
    return [sorted(g, key=lambda s: s.index) for g in groups]
