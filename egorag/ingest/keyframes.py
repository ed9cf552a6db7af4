"""Reducing a scene's frame embeddings to a few keyframe vectors: K-means (keep the real frame
nearest each centroid) or bipartite soft matching (ToMe-style weighted-average merging)."""

from __future__ import annotations

import numpy as np

from egorag.encoders.base import l2_normalize


def kmeans_keyframes(vectors: np.ndarray, k: int, iters: int = 25, seed: int = 0) -> np.ndarray:
    """Indices (ascending) of the frames nearest each of up to ``k`` spherical K-means centroids."""
    n = len(vectors)
    if n <= k:
        return np.arange(n)
    x = l2_normalize(vectors)
    centroids = x[_farthest_first(x, k, seed)]
    for _ in range(iters):
        assign = np.argmax(x @ centroids.T, axis=1)
        new = np.stack([x[assign == c].mean(axis=0) if np.any(assign == c) else centroids[c] for c in range(k)])
        new = l2_normalize(new)
        if np.allclose(new, centroids, atol=1e-6):
            break
        centroids = new
    assign = np.argmax(x @ centroids.T, axis=1)
    picks = set()
    for c in range(k):
        members = np.flatnonzero(assign == c)
        if members.size:
            picks.add(int(members[np.argmax(x[members] @ centroids[c])]))
    return np.array(sorted(picks))


def _farthest_first(x: np.ndarray, k: int, seed: int) -> list[int]:
    """Deterministic k-means++-style seeding: start at the medoid-ish frame, add the farthest."""
    rng = np.random.default_rng(seed)
    first = int(np.argmax(x @ x.mean(axis=0))) if len(x) else int(rng.integers(len(x)))
    chosen = [first]
    best = x @ x[first]
    for _ in range(1, k):
        nxt = int(np.argmin(best))
        chosen.append(nxt)
        best = np.maximum(best, x @ x[nxt])
    return chosen


def bipartite_merge(vectors: np.ndarray, times: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge frames down to at most ``m`` vectors by repeated bipartite soft matching.

    Each round splits the tokens alternately into sets A and B, matches every A token to its most
    similar B token, and merges the most similar pairs by size-weighted average (ToMe). Returns
    the merged, re-normalised vectors and each one's size-weighted mean time, in time order.
    """
    x = l2_normalize(vectors).astype(np.float64)
    t = np.asarray(times, dtype=np.float64)
    size = np.ones(len(x))
    while len(x) > m:
        a, b = np.arange(0, len(x), 2), np.arange(1, len(x), 2)
        sims = x[a] @ x[b].T
        match = np.argmax(sims, axis=1)
        score = sims[np.arange(len(a)), match]
        r = min(len(x) - m, len(a))
        merge = np.argsort(-score)[:r]
        keep_a = np.setdiff1d(np.arange(len(a)), merge)
        xb, tb, sb = x[b].copy() * size[b, None], t[b] * size[b], size[b].copy()
        for i in merge:
            j = match[i]
            xb[j] += x[a[i]] * size[a[i]]
            tb[j] += t[a[i]] * size[a[i]]
            sb[j] += size[a[i]]
        xb /= sb[:, None]
        tb /= sb
        x = np.concatenate([x[a[keep_a]], xb])
        t = np.concatenate([t[a[keep_a]], tb])
        size = np.concatenate([size[a[keep_a]], sb])
        order = np.argsort(t, kind="stable")
        x, t, size = x[order], t[order], size[order]
    return l2_normalize(x.astype(np.float32)), t
