"""The hierarchical retriever: a video prior from global embeddings, per-modality scene search,
calibrated fusion (weighted or RRF) with BM25, then adjacent-scene merging into time ranges.

It talks to a :class:`index.snapshot.SearchBackend` (a search snapshot) through keys it never
interprets; each query takes the backend once and uses it to the end. Only the best candidates
fetch their metadata, and only the final hits their text. A backend with a fused sketch draws an
unfiltered query's candidates by their approximate fused score instead of per modality, and
narrows them on that score before the exact re-scoring. The video level (global vectors and the
prior) is :class:`retrieval.video_prior.VideoPrior`, built once per snapshot.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from egorag.config import RetrievalConfig
from egorag.errors import NotFoundError, QueryError
from egorag.filters import SceneFilter
from egorag.hits import Hit
from egorag.schema import Moment
from index.snapshot import SearchBackend
from retrieval.fusion import (
    Calibration,
    Span,
    bm25_scale,
    merge_adjacent,
    rrf_contributions,
    total,
    weighted_contributions,
)
from retrieval.video_prior import VideoPrior

logger = logging.getLogger("egorag")

BM25_Z = 3.0  # a query's best BM25 match counts like a 3-sigma similarity
MAXSIM_REFINE = 50  # best candidates whose visual score is refined by MaxSim over keyframes
TOP_VIDEO_SCENES = 200  # mean scenes per top video up to which all of its scenes are candidates


@dataclass(frozen=True)
class Query:
    """A text query, an image query (PIL image), or both."""

    text: str | None = None
    image: Any = None

    def __post_init__(self):
        if self.text is not None and not isinstance(self.text, str):
            raise QueryError(f"a text query must be a string, got {type(self.text).__name__}")
        if not (self.text and self.text.strip()) and self.image is None:
            raise QueryError(f"a search needs a text query or an image, got the text {self.text!r}")
        if self.text is not None:
            try:
                self.text.encode("utf-8")
            except UnicodeEncodeError as exc:  # bytes that were not UTF-8, passed through as surrogates
                raw = self.text.encode("utf-8", "surrogateescape")[exc.start : exc.start + 1]
                raise QueryError(f"the query is not UTF-8 text (byte {raw.hex()} at position {exc.start}); "
                                 "set the terminal or client to UTF-8") from None


@dataclass
class _Derived:
    """What the retriever derives from one snapshot (its ``generation``), for all its queries."""

    generation: int
    videos: VideoPrior | None = None
    code_positions: tuple[np.ndarray, np.ndarray] | None = None  # the backend's video names, their positions


class HierarchicalRetriever:
    """Composes query encoders, a search backend and fusion. ``backend`` returns the backend a
    query is answered from (:meth:`index.snapshot.Snapshots.current` follows a store)."""

    def __init__(self, backend: Callable[[], SearchBackend], encoders: Mapping[str, Any], config: RetrievalConfig = RetrievalConfig()):
        self.backend = backend
        self.encoders = dict(encoders)
        self.config = config
        self._derived: _Derived | None = None

    def _take(self) -> tuple[SearchBackend, _Derived]:
        """The backend for one query, and what is derived from it (made anew per generation)."""
        b = self.backend()
        derived = self._derived
        if derived is None or derived.generation != b.generation:
            derived = self._derived = _Derived(b.generation)
        return b, derived

    # -- query embedding ----------------------------------------------------------------------

    def embed(self, query: Query) -> dict[str, np.ndarray]:
        """The query in each searchable (non-zero weight) modality's space."""
        return self.embed_many([query])[0]

    def embed_many(self, queries: Sequence[Query]) -> list[dict[str, np.ndarray]]:
        """:meth:`embed` for several queries, each encoder called once with all of them."""
        out: list[dict[str, np.ndarray]] = [{} for _ in queries]
        weights = self.config.weights
        held = self.backend().modalities
        modalities = {m for m in set(held) & set(self.encoders) if weights.get(m, 0.0) > 0}
        texts = [i for i, q in enumerate(queries) if q.text]
        for m in sorted(modalities):
            if texts and self.encoders[m].text_queries:  # a vision tower without a text tower: image queries only
                for i, vector in zip(texts, self.encoders[m].encode_queries([queries[i].text for i in texts])):
                    out[i][m] = vector
        images = [i for i, q in enumerate(queries) if q.image is not None]
        if images and "visual" in modalities:
            for i, image_vec in zip(images, self.encoders["visual"].encode_images([queries[i].image for i in images])):
                out[i]["visual"] = image_vec if "visual" not in out[i] else _unit(out[i]["visual"] + image_vec)
        return out

    # -- search -------------------------------------------------------------------------------

    def search(self, query: Query, k: int = 10, where: SceneFilter | None = None) -> list[Hit]:
        return self.search_many([query], k, where)[0]

    def search_many(self, queries: Sequence[Query], k: int = 10, where: SceneFilter | None = None) -> list[list[Hit]]:
        """Several queries' hits, each the same as its own :meth:`search` gives, in less time:
        each encoder runs once for all of them, and so does the fused sketch's scan."""
        return self.search_vectors_many(self.embed_many(queries), [q.text for q in queries], k, where)

    def similar(self, scene_id: str, k: int = 10, where: SceneFilter | None = None) -> list[Hit]:
        """"More like this scene": the scenes nearest to it, its own vectors (every modality it
        has) as the query; the hit holding the scene itself is left out."""
        b, _ = self._take()
        key = b.key_of(scene_id)
        if key is None:
            raise NotFoundError(f"{scene_id}: no such scene (scene ids are <video id>:<index>, as hits give them)")
        qv = {}
        for m in b.modalities:
            vector = b.vectors(m, [key])[0]
            if self.config.weights.get(m, 0.0) > 0 and not np.isnan(vector).any():
                qv[m] = vector
        if not qv:
            return []
        return [h for h in self.search_vectors(qv, None, k + 1, where) if scene_id not in h.scene_ids][:k]

    def search_vectors(self, qv: Mapping[str, np.ndarray], text: str | None, k: int = 10, where: SceneFilter | None = None) -> list[Hit]:
        """Search with query vectors already embedded (and the text, for BM25)."""
        return self.search_vectors_many([qv], [text], k, where)[0]

    def search_vectors_many(self, qvs: Sequence[Mapping[str, np.ndarray]], texts: Sequence[str | None], k: int = 10,
                            where: SceneFilter | None = None) -> list[list[Hit]]:
        """:meth:`search_vectors` for several queries. The fused sketch is scanned for all of
        them in one FAISS call, which reads each block of codes once for a block of queries."""
        b, derived = self._take()
        calibrations = [self._calibrations(b, qv) for qv in qvs]
        sketches = [self._sketch_query(b, qv, cal, where) for qv, cal in zip(qvs, calibrations)]
        pools: list = [None] * len(qvs)
        wanted = [i for i, sketch in enumerate(sketches) if sketch is not None]
        if wanted:
            found = b.sketch_search(np.stack([sketches[i] for i in wanted]), self.config.fused_pool)
            for i, rows in zip(wanted, found):
                pools[i] = rows
        return [self._search(b, derived, *args, k, where) for args in zip(qvs, texts, calibrations, sketches, pools)]

    def _search(self, b: SearchBackend, derived: _Derived, qv, text, calibration, sketch, pool, k, where) -> list[Hit]:
        """One query, its calibration, sketch query and sketch pool already found."""
        if not qv and not text:
            return []
        videos = self._video_level(b, derived)
        weights = self.config.weights
        video_cal = videos.calibrations(qv, weights) if self.config.prior_weight > 0 else {}
        top_videos, top_priors = np.zeros(0, np.int64), np.zeros(0)
        if video_cal and len(videos) > self.config.top_videos:
            top_videos, top_priors = videos.best(qv, weights, video_cal, self.config.top_videos)
        keys, bm25, protected = self._candidates(b, qv, text, list(videos.ids[top_videos]), where, pool)
        positions = self._positions(b, derived, videos, keys)
        if (positions < 0).any():  # scenes of half-written videos are no results
            keys = [key for key, p in zip(keys, positions) if p >= 0]
            positions = positions[positions >= 0]
        if sketch is not None and len(keys) > self.config.fused_candidates:
            bound = np.zeros(len(videos))  # each video's prior, or an upper bound of it
            if len(top_priors):
                bound[:] = top_priors.min()
                bound[top_videos] = top_priors
            elif video_cal:  # few videos: all exact
                bound = videos.prior(qv, weights, video_cal, np.arange(len(videos)))
            keep = self._narrow(b, sketch, keys, bm25, protected, qv, bound[positions])
            keys, positions = [keys[i] for i in keep], positions[keep]
        if not keys:
            return []
        raw = self._similarities(b, qv, keys)
        if bm25:
            raw["bm25"] = np.array([bm25.get(key, np.nan) for key in keys])
        priors = np.zeros(len(keys))
        if video_cal:
            unique, inverse = np.unique(positions, return_inverse=True)
            priors = videos.prior(qv, weights, video_cal, unique)[inverse]
        fused, parts = self._fuse(raw, priors, calibration)
        moments: dict[int, float] = {}
        if "visual" in qv and b.has_keyframes and not np.isnan(raw["visual"]).all():
            best = [int(i) for i in np.argsort(-fused)[:MAXSIM_REFINE] if not np.isnan(raw["visual"][i])]
            moments = self._maxsim(b, qv["visual"], keys, best, raw["visual"])
            fused, parts = self._fuse(raw, priors, calibration)
        logger.debug("fused %d candidates from %s", len(keys), sorted(raw))
        return self._hits(b, keys, fused, parts, raw, priors, moments, k, text)

    def _positions(self, b: SearchBackend, derived: _Derived, videos: VideoPrior, keys) -> np.ndarray:
        """Each key's video's position in the video level (-1: not a complete video): one
        lookup per video of the backend's name table, not per key."""
        if not keys:
            return np.zeros(0, np.int64)
        codes, names = b.video_codes(keys)
        if derived.code_positions is None or derived.code_positions[0] is not names:
            derived.code_positions = (names, videos.positions_of(names))
        return derived.code_positions[1][codes]

    def _video_level(self, b: SearchBackend, derived: _Derived) -> VideoPrior:
        if derived.videos is None:
            level = b.video_level()
            derived.videos = VideoPrior(level.ids, level.vectors, level.present, level.derived)
        return derived.videos

    def _sketch_query(self, b: SearchBackend, qv, calibration: Mapping[str, Calibration], where) -> np.ndarray | None:
        """The fused sketch's query (each covered modality's query times ``w / sigma``), or None
        when the backend has no sketch, the query none of its modalities, or a filter applies
        (filtered searches go per modality, exactly when few scenes pass)."""
        covered = [m for m in qv if m in b.sketch_modalities and self.config.weights.get(m, 0) > 0]
        if not covered or (where is not None and not where.is_empty()):
            return None
        return b.sketch_query({m: self.config.weights[m] / calibration[m].std * qv[m] for m in covered})

    def _candidates(self, b: SearchBackend, qv, text, top_videos: list[str], where, pool) -> tuple[list, dict, set]:
        """Stage 2: scene candidates: the fused sketch's ``pool`` (None: no sketch) or each
        modality's, plus the top videos' scenes and BM25 matches. Also returns the keys that
        narrowing must keep (those found by a modality the sketch does not cover)."""
        n = self.config.candidates
        candidates: dict = {}
        protected: set = set()
        filters = [where]
        if top_videos:
            base = where or SceneFilter()
            scope = tuple(set(top_videos) & set(base.video_ids)) if base.video_ids else tuple(top_videos)
            in_top = SceneFilter(scope, base.path_glob, base.time_from, base.time_to)
            # every scene of the top videos is a candidate, unless they are very long
            keys = b.filter_keys(in_top, TOP_VIDEO_SCENES * max(1, len(scope))) if scope else []
            if keys is None:
                filters.append(in_top)
            else:
                candidates.update(dict.fromkeys(keys))
        covered = set(b.sketch_modalities) if pool is not None else set()
        if pool is not None:
            candidates.update(dict.fromkeys(pool))
        for m, q in qv.items():
            for f in filters:
                if m in covered and f is where:  # the sketch's pool stands for it
                    continue
                found = dict(b.search_keys(m, q[None, :], n, f))
                candidates.update(found)
                if pool is not None and m not in covered:
                    protected.update(found)
        bm25: dict = {}
        if text and self.config.weights.get("bm25", 0) > 0:
            bm25 = dict(b.text_search(text, n, where))
            candidates.update(bm25)
        return list(candidates), bm25, protected

    def _narrow(self, b: SearchBackend, sketch: np.ndarray, keys: list, bm25: dict, protected: set, qv, priors: np.ndarray) -> np.ndarray:
        """The ``fused_candidates`` best keys by approximate fused score (sketch codes, BM25 and
        ``priors``: exact for the top videos' scenes, for the others the weakest top video's, an
        upper bound), plus the protected keys, in their original order."""
        weights = self.config.weights
        total = sum(weights[m] for m in qv if weights.get(m, 0) > 0) + (weights.get("bm25", 0) if bm25 else 0)
        approx = b.sketch_scores(sketch, keys).astype(np.float64)
        if bm25:
            approx += weights["bm25"] * np.nan_to_num(bm25_scale(np.array([bm25.get(k, np.nan) for k in keys]), BM25_Z))
        approx = approx / (total or 1.0) + self.config.prior_weight * priors
        best = np.argpartition(-approx, self.config.fused_candidates)[: self.config.fused_candidates]
        keep = np.zeros(len(keys), bool)
        keep[best] = True
        if protected:
            keep |= np.fromiter((k in protected for k in keys), bool, len(keys))
        return np.flatnonzero(keep)

    def _similarities(self, b: SearchBackend, qv, keys) -> dict[str, np.ndarray]:
        """Exact per-modality cosine for every candidate (visual: against the keyframes' mean);
        NaN where a candidate has no vector for the modality."""
        return {m: (b.vectors(m, keys) @ q).astype(np.float64) for m, q in qv.items()}

    def _maxsim(self, b: SearchBackend, q: np.ndarray, keys, positions: list[int], visual: np.ndarray) -> dict[int, float]:
        """Rescore candidates by their best keyframe (MaxSim); returns each best keyframe's time."""
        moments: dict[int, float] = {}
        keyframes = b.keyframes([keys[i] for i in positions])
        for i in positions:
            found = keyframes.get(keys[i])
            if found is None or not len(found.vectors):
                continue
            kf = found.vectors @ q
            best = int(np.argmax(kf))
            visual[i] = float(kf[best])
            if best < len(found.times) and np.isfinite(found.times[best]):
                moments[i] = float(found.times[best])
        return moments

    def _calibrations(self, b: SearchBackend, qv) -> dict[str, Calibration]:
        """Each modality's mean and spread of this query's similarity to the collection."""
        return {m: Calibration.from_moments(b.background_moments(m), q) for m, q in qv.items()}

    def _fuse(self, raw: Mapping[str, np.ndarray], priors: np.ndarray,
              calibration: Mapping[str, Calibration]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The fused scores, and each source's (modality, ``bm25``, ``prior``) contribution
        to them: the contributions add up to the fused score."""
        cfg = self.config
        if cfg.fusion == "rrf":
            scores = dict(raw)
            if priors.any():
                scores["prior"] = priors
            parts = rrf_contributions(scores, dict(cfg.weights, prior=cfg.prior_weight), cfg.rrf_k)
        else:
            calibrated: dict[str, np.ndarray] = {}
            for m, sims in raw.items():
                if m == "bm25":
                    calibrated[m] = bm25_scale(sims, BM25_Z)
                    continue
                cal = calibration[m]
                calibrated[m] = (sims - cal.mean) / cal.std
            parts = weighted_contributions(calibrated, cfg.weights)
            if cfg.prior_weight > 0 and priors.any():
                parts["prior"] = cfg.prior_weight * priors
        return total(parts, len(priors)), parts

    def _hits(self, b: SearchBackend, keys, fused: np.ndarray, parts, raw, priors: np.ndarray, moments, k, text: str | None = None) -> list[Hit]:
        order = np.argsort(-fused, kind="stable")[: max(k * 8, 64)]  # merging needs a little more than k
        metas = {m.key: m for m in b.meta([keys[i] for i in order])}
        spans = [Span(int(i), metas[keys[i]].video_id, metas[keys[i]].scene_index, float(fused[i])) for i in order if keys[i] in metas]
        groups = (merge_adjacent(spans) if self.config.merge_adjacent else [[s] for s in spans])[:k]
        texts = {s.scene_id: s for s in b.scenes([keys[s.item] for g in groups for s in g])}
        said = TextMoments(text) if text else None
        hits = []
        for group in groups:
            best = max(group, key=lambda s: s.score)
            top, members = metas[keys[best.item]], [metas[keys[s.item]] for s in group]
            scenes = [texts[m.scene_id] for m in members if m.scene_id in texts]
            hits.append(
                Hit(
                    scene_id=top.scene_id,
                    video_id=top.video_id,
                    video=top.video_path,
                    scene=top.scene_index,
                    start=members[0].start,
                    end=members[-1].end,
                    score=round(best.score, 6),
                    scores={s: round(float(v[best.item]), 6) for s, v in parts.items() if v[best.item] != 0},
                    similarities={m: round(float(v[best.item]), 6) for m, v in raw.items() if not np.isnan(v[best.item])},
                    prior=round(float(priors[best.item]), 6),
                    transcript=" ".join(s.transcript for s in scenes if s.transcript),
                    caption=" ".join(s.caption for s in scenes if s.caption),
                    screen_text="\n".join(s.screen_text for s in scenes if s.screen_text),
                    audio_events=_union(s.audio_events for s in scenes),
                    speakers=_union(s.speakers for s in scenes),
                    scene_ids=tuple(m.scene_id for m in members),
                    **_moment(moments.get(best.item), said, texts.get(top.scene_id)),
                )
            )
        return hits


def _moment(keyframe: float | None, said: TextMoments | None, scene) -> dict:
    """A hit's moment: its best keyframe's time (visual), else the spoken word or screen line
    holding most of the query's terms, with that text and where it came from."""
    if keyframe is not None:
        return {"moment": keyframe, "moment_source": "visual"}
    found = said(scene.moments) if said is not None and scene is not None else None
    if found is None:
        return {}
    shown = found.text in scene.screen_text.splitlines()
    return {"moment": float(found.time), "moment_text": found.text, "moment_source": "screen" if shown else "speech"}


def _union(labels) -> tuple[str, ...]:
    """The labels of merged scenes, each once, in order of first appearance."""
    return tuple(dict.fromkeys(label for group in labels for label in group))


class TextMoments:
    """Where a text hit's words are: the spoken word or screen line that holds the most of the
    query's terms (stemmed as BM25 stems them; the first such on a tie), or None when none holds
    any. Made once per query, called per hit."""

    def __init__(self, query: str):
        from index.texts import query_tokens, stems

        self._tokens, self._stems = query_tokens, stems
        self.wanted = {t for t in stems(query_tokens(query)) if t}
        # a word or line holding none of the terms' first letters cannot stem to a term
        self._maybe = re.compile("|".join(sorted(re.escape(t[:3]) for t in self.wanted)), re.IGNORECASE) if self.wanted else None

    def __call__(self, moments: Sequence[Moment]) -> Moment | None:
        if self._maybe is None or not moments:
            return None
        maybe = [m for m in moments if not m.text.isascii() or self._maybe.search(m.text)]
        tokens = [self._tokens(m.text) for m in maybe]
        stemmed = iter(self._stems([t for ts in tokens for t in ts]))
        best, at = 0, None
        for m, ts in zip(maybe, tokens):
            found = len(self.wanted & {s for s in (next(stemmed) for _ in ts) if s})
            if found > best:
                best, at = found, m
        return at


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v
