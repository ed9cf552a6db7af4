"""The hierarchical retriever: a video prior from global embeddings, per-modality scene search,
calibrated fusion (weighted or RRF) with BM25, then adjacent-scene merging into time ranges."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from egorag.config import RetrievalConfig
from egorag.schema import Scene
from index.base import SceneFilter
from retrieval.fusion import Calibration, Span, bm25_scale, merge_adjacent, rrf_fusion, weighted_fusion, zscores
from retrieval.hits import Hit

logger = logging.getLogger("egorag")

BACKGROUND_SAMPLE = 4096  # scene vectors per modality used to calibrate a query's similarities
BM25_Z = 3.0  # a query's best BM25 match counts like a 3-sigma similarity


@dataclass(frozen=True)
class Query:
    """A text query, an image query (PIL image), or both."""

    text: str | None = None
    image: Any = None

    def __post_init__(self):
        if not (self.text and self.text.strip()) and self.image is None:
            raise ValueError("a query needs text or an image")


class HierarchicalRetriever:
    """Composes a scene store, query encoders and fusion. ``backend`` answers per-column vector
    searches (the store itself, or a FAISS accelerator built from it)."""

    def __init__(self, store, encoders: Mapping[str, Any], config: RetrievalConfig = RetrievalConfig(), backend=None):
        self.store = store
        self.encoders = dict(encoders)
        self.config = config
        self.backend = backend if backend is not None else store
        self._cache_version: int | None = None
        self._background: dict[str, np.ndarray] = {}
        self._video_vecs: dict[str, tuple[list[str], np.ndarray]] = {}
        self._complete: set[str] = set()

    # -- query embedding ----------------------------------------------------------------------

    def embed(self, query: Query) -> dict[str, np.ndarray]:
        """The query in each searchable modality's space."""
        vectors: dict[str, np.ndarray] = {}
        weights = self.config.weights
        modalities = {m for m in set(self.store.modalities) & set(self.encoders) if weights.get(m, 0.0) > 0}
        if query.text:
            for m in sorted(modalities):
                vectors[m] = self.encoders[m].encode_queries([query.text])[0]
        if query.image is not None and "visual" in modalities:
            image_vec = self.encoders["visual"].encode_images([query.image])[0]
            vectors["visual"] = image_vec if "visual" not in vectors else _unit(vectors["visual"] + image_vec)
        return vectors

    # -- search -------------------------------------------------------------------------------

    def search(self, query: Query, k: int = 10, where: SceneFilter | None = None) -> list[Hit]:
        self._refresh()
        qv = self.embed(query)
        if not qv and not query.text:
            return []
        prior = self._video_prior(qv) if self.config.prior_weight > 0 else {}
        candidates, bm25 = self._candidates(qv, query.text, prior, where)
        scenes = [s for s in self.store.get_scenes(sorted(candidates), with_vectors=True) if s.video_id in self._complete]
        if where is not None:
            scenes = [s for s in scenes if where.matches(s)]
        if not scenes:
            return []
        raw, moments = self._similarities(qv, scenes)
        if bm25:
            raw["bm25"] = {s.scene_id: bm25[s.scene_id] for s in scenes if s.scene_id in bm25}
        fused = self._fuse(qv, raw, {s.scene_id: s.video_id for s in scenes}, prior)
        logger.debug("fused %d candidates from %s", len(fused), {m: len(v) for m, v in raw.items()})
        return self._hits(scenes, fused, raw, prior, moments, k)

    def _refresh(self) -> None:
        version = self.store.version
        if version != self._cache_version:
            self._background.clear()
            self._video_vecs.clear()
            self._complete = self.store.complete_ids()
            self._cache_version = version

    def _background_for(self, modality: str) -> np.ndarray:
        if modality not in self._background:
            _, vectors = self.store.scene_vectors(modality)
            if len(vectors) > BACKGROUND_SAMPLE:
                rng = np.random.default_rng(0)
                vectors = vectors[rng.choice(len(vectors), BACKGROUND_SAMPLE, replace=False)]
            self._background[modality] = vectors
        return self._background[modality]

    def _video_prior(self, qv: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Stage 1: each video's calibrated similarity to the query, fused over modalities."""
        per_modality: dict[str, dict[str, float]] = {}
        for m, q in qv.items():
            if m not in self._video_vecs:
                self._video_vecs[m] = self.store.video_vectors(m)
            ids, vectors = self._video_vecs[m]
            if ids:
                per_modality[m] = zscores(dict(zip(ids, (vectors @ q).tolist())))
        return weighted_fusion(per_modality, self.config.weights)

    def _candidates(self, qv, text, prior, where) -> tuple[set[str], dict[str, float]]:
        """Stage 2: per-modality scene candidates from all videos plus the top videos' scenes."""
        n = self.config.candidates
        candidates: set[str] = set()
        top_videos = sorted(prior, key=prior.get, reverse=True)[: self.config.top_videos]
        scoped = None
        if top_videos and len(prior) > len(top_videos):
            base = where or SceneFilter()
            scoped = SceneFilter(tuple(top_videos), base.path_glob, base.time_from, base.time_to)
            if base.video_ids:
                scoped = SceneFilter(tuple(set(top_videos) & set(base.video_ids)), base.path_glob, base.time_from, base.time_to)
        for m, q in qv.items():
            for filt in (where, scoped) if scoped is not None else (where,):
                for hits in self.backend.search(m, q[None, :], n, filt):
                    candidates.update(i for i, _ in hits)
        bm25: dict[str, float] = {}
        if text and self.config.weights.get("bm25", 0) > 0 and hasattr(self.store, "text_search"):
            bm25 = dict(self.store.text_search(text, n, where))
            candidates.update(bm25)
        return candidates, bm25

    def _similarities(self, qv, scenes: list[Scene]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        """Exact per-modality cosine for every candidate; visual is MaxSim over keyframes."""
        raw: dict[str, dict[str, float]] = {}
        moments: dict[str, float] = {}
        for m, q in qv.items():
            sims: dict[str, float] = {}
            for s in scenes:
                if m == "visual" and s.keyframes is not None and len(s.keyframes.vectors):
                    kf = s.keyframes.vectors @ q
                    best = int(np.argmax(kf))
                    sims[s.scene_id] = float(kf[best])
                    if best < len(s.keyframes.times):
                        moments[s.scene_id] = float(s.keyframes.times[best])
                elif (vec := s.vectors.get(m)) is not None:
                    sims[s.scene_id] = float(vec @ q)
            raw[m] = sims
        return raw, moments

    def _fuse(self, qv, raw, video_of: Mapping[str, str], prior: Mapping[str, float]) -> dict[str, float]:
        cfg = self.config
        if cfg.fusion == "rrf":
            rankings = {m: sorted(s, key=s.get, reverse=True) for m, s in raw.items()}
            if prior:
                rankings["prior"] = sorted(video_of, key=lambda i: prior.get(video_of[i], 0.0), reverse=True)
            weights = dict(cfg.weights, prior=cfg.prior_weight)
            return rrf_fusion(rankings, weights, cfg.rrf_k)
        calibrated: dict[str, dict[str, float]] = {}
        for m, sims in raw.items():
            if m == "bm25":
                calibrated[m] = {i: BM25_Z * v for i, v in bm25_scale(sims).items()}
                continue
            bg = self._background_for(m)
            q_bg = bg @ qv[m] if len(bg) else np.zeros(0)
            cal = Calibration.from_background(q_bg)
            calibrated[m] = {i: cal(v) for i, v in sims.items()}
        fused = weighted_fusion(calibrated, cfg.weights)
        for i in video_of:
            fused[i] = fused.get(i, 0.0) + cfg.prior_weight * prior.get(video_of[i], 0.0)
        return fused

    def _hits(self, scenes, fused, raw, prior, moments, k) -> list[Hit]:
        by_id = {s.scene_id: s for s in scenes}
        ranked = sorted(fused, key=fused.get, reverse=True)
        spans = [Span(i, by_id[i].video_id, by_id[i].scene_index, fused[i]) for i in ranked]
        groups = merge_adjacent(spans) if self.config.merge_adjacent else [[s] for s in spans]
        hits = []
        for group in groups[:k]:
            best = max(group, key=lambda s: s.score)
            scene = by_id[best.item]
            members = [by_id[s.item] for s in group]
            hits.append(
                Hit(
                    scene_id=scene.scene_id,
                    video_id=scene.video_id,
                    video=scene.video_path,
                    scene=scene.scene_index,
                    start=members[0].start,
                    end=members[-1].end,
                    score=round(best.score, 6),
                    scores={m: round(v[best.item], 6) for m, v in raw.items() if best.item in v},
                    prior=round(prior.get(scene.video_id, 0.0), 6),
                    transcript=" ".join(s.transcript for s in members if s.transcript),
                    caption=" ".join(s.caption for s in members if s.caption),
                    moment=moments.get(best.item),
                    scene_ids=tuple(s.scene_id for s in members),
                )
            )
        return hits


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v
