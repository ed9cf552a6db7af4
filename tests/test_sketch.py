"""The fused sketch: its scores track the calibrated fused score, the accelerator keeps it in step
with the store (build, persist, extend, retrain, drop), and the retriever's candidates drawn
from it find the exact fused top 10."""

import os

import numpy as np
import pytest

import index.build as build_mod
import retrieval.hierarchical as hierarchical
from egorag.config import RetrievalConfig
from egorag.filters import SceneFilter
from egorag.schema import EncoderFingerprint, Scene, Video, VideoInfo, scene_id
from index import files
from index.build import build_snapshot
from index.lance import LanceSceneStore
from index.snapshot import Snapshot
from index.vectors import FaissOptions, FusedSketch
from retrieval.hierarchical import HierarchicalRetriever

DIMS = {"text": 32, "visual": 24}


def embeddings(n, dim, seed, rank=8):
    """Unit vectors of a low intrinsic dimension (a decaying spectrum), like real embeddings."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, rank)))[0].T
    x = (rng.standard_normal((n, rank)) * np.linspace(1.0, 0.3, rank)) @ basis + 0.1 * rng.standard_normal((n, dim))
    x += 0.5 * basis[0]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def trained(n=4000, missing=0.25):
    x = {m: embeddings(n, d, seed=i) for i, (m, d) in enumerate(DIMS.items())}
    present = {"text": np.ones(n, bool), "visual": np.random.default_rng(7).random(n) >= missing}
    blocks = {m: (x[m][present[m]], present[m]) for m in DIMS}
    sketch = FusedSketch.train(blocks, n, n)
    sketch.append(sketch.project(blocks, n))
    return sketch, x, present


def exact(sketch, parts, x, present):
    """The fused score up to a constant: each modality's scaled similarity to the centred vector,
    0 (the average) where a scene lacks the modality."""
    return sum(np.where(present[m], (x[m] - sketch.means[m]) @ q, 0.0) for m, q in parts.items())


def test_sketch_scores_track_the_fused_score():
    sketch, x, present = trained()
    n = len(x["text"])
    rng = np.random.default_rng(3)
    recalls = []
    for i in range(10):
        target = rng.integers(n)
        parts = {"text": 1.0 / 0.05 * x["text"][target], "visual": 0.5 / 0.08 * embeddings(1, 24, seed=100 + i)[0]}
        q = sketch.query(parts)
        want = exact(sketch, parts, x, present)
        got = sketch.scores(q, np.arange(n))
        assert np.corrcoef(want, got)[0, 1] > 0.995
        top = set(np.argsort(-want)[:10])
        recalls.append(len(top & set(sketch.search(q, 300, np.ones(n, bool))[0])) / 10)
    assert np.mean(recalls) >= 0.95, recalls
    # a scene without a modality counts as the collection average there, as fusion counts it
    lacking = np.flatnonzero(~present["visual"])[:50]
    only_visual = sketch.query({"visual": 10 * embeddings(1, 24, seed=5)[0]})
    spread = np.std(sketch.scores(only_visual, np.flatnonzero(present["visual"])))
    assert np.abs(sketch.scores(only_visual, lacking)).max() < 0.05 * spread
    dead = np.ones(n, bool)
    dead[sketch.search(q, 5, np.ones(n, bool))[0]] = False
    assert not set(sketch.search(q, 100, dead)[0]) & set(np.flatnonzero(~dead))


def test_one_query_on_a_large_sketch_is_scanned_in_one_part_per_core(monkeypatch):
    """The parts' scan gives the whole index's PQ scores and the same rows above the cut (rows
    tied at the cut may differ); the whole index is unchanged; an append reaches the parts."""
    import faiss

    import index.vectors as sketch_mod

    sketch, x, present = trained(n=3000)
    monkeypatch.setattr(sketch_mod, "PART_MIN_ROWS", 1000)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(3)
    try:
        split = sketch._split_scan()
    finally:
        faiss.omp_set_num_threads(before)
    assert split is not None and split.count() == 3 and split.ntotal == 3000
    rng = np.random.default_rng(4)
    alive = np.ones(3000, bool)
    for i in range(5):
        target = int(rng.integers(3000))
        q = sketch.query({"text": 20 * x["text"][target], "visual": 6 * x["visual"][target]})[None]
        d_whole, rows_whole = sketch.pq.search(q, 200)
        d_split, rows_split = split.search(q, 200)
        np.testing.assert_array_equal(d_split, d_whole)
        cut = d_whole[0, -1]
        assert set(rows_split[0][d_split[0] > cut]) == set(rows_whole[0][d_whole[0] > cut])
        assert target in sketch.search(q, 200, alive)[0]  # search() takes the parts for one query
        np.testing.assert_array_equal(sketch.search(q, 200, alive, split=False)[0], rows_whole[0])  # or the whole index
    # rows appended after the split was built are scanned too (the parts are rebuilt)
    extra = {m: embeddings(300, d, seed=40 + i) for i, (m, d) in enumerate(DIMS.items())}
    sketch.append(sketch.project({m: (v, np.ones(300, bool)) for m, v in extra.items()}, 300))
    q = sketch.query({"text": 20 * extra["text"][123], "visual": 6 * extra["visual"][123]})
    faiss.omp_set_num_threads(3)
    try:
        assert 3000 + 123 in sketch.search(q, 50, np.ones(3300, bool))[0]
    finally:
        faiss.omp_set_num_threads(before)
    assert sketch._split[0] == 3300 and sketch._split[1].ntotal == 3300


def fill(store, x, first_video, videos, per):
    for v in range(first_video, first_video + videos):
        vid = f"v{v:03d}"
        rows = range((v - first_video) * per, (v - first_video + 1) * per)
        scenes = [
            Scene(scene_id(vid, i), vid, f"/data/{vid}.mp4", i, float(i), float(i + 1), vectors={m: x[m][r] for m in DIMS})
            for i, r in enumerate(rows)
        ]
        means = {m: x[m][list(rows)].mean(axis=0) for m in DIMS}
        store.add_video(
            Video(vid, f"/data/{vid}.mp4", vid, VideoInfo(f"/data/{vid}.mp4", per, 25, 8, 8, False, 1), per,
                  {m: v / np.linalg.norm(v) for m, v in means.items()}),
            scenes,
        )


@pytest.fixture
def store(tmp_path):
    return LanceSceneStore(tmp_path / "db", {m: EncoderFingerprint(m, "test", m, d) for m, d in DIMS.items()})


def snapshot(store, options) -> Snapshot:
    build_snapshot(store, options)
    return Snapshot.open(files.newest(store.uri)[1], options)


def test_snapshots_build_extend_retrain_and_drop_the_sketch(store, monkeypatch):
    x = {m: embeddings(900, d, seed=i) for i, (m, d) in enumerate(DIMS.items())}
    fill(store, x, 0, 6, 100)
    options = FaissOptions(sketch_threshold=300)
    snap = snapshot(store, options)
    assert snap.sketch_modalities == ("text", "visual") and len(snap.sketch) == 600
    assert (snap.root / "sketch.faiss").exists() and len(list(snap.root.glob("sketch-*.u8"))) == 1

    trainings = []
    real_train = FusedSketch.train
    monkeypatch.setattr(build_mod.FusedSketch, "train", lambda *a, **k: trainings.append(1) or real_train(*a, **k))
    fill(LanceSceneStore(store.uri), {m: v[600:] for m, v in x.items()}, 6, 1, 100)  # another process adds a video
    extended = snapshot(store, options)
    assert not trainings and len(extended.sketch) == 700  # appended to, not retrained
    assert os.path.samefile(snap.root / snap.sketch.codes.path.name, extended.root / extended.sketch.codes.path.name)
    row = extended.catalog.row_of(scene_id("v006", 42))
    q = extended.sketch_query({"text": 20 * x["text"][642], "visual": 20 * x["visual"][642]})
    assert extended.sketch_search(q[None], 5)[0][0] == row

    for vid in ("v000", "v001", "v002"):
        store.delete_video(vid)
    retrained = snapshot(store, options)
    assert trainings == [1]  # 3/7 of the rows gone: retrained on the rest
    assert len(list(retrained.root.glob("sketch-*.u8"))) == 1  # the old codes not carried over
    assert all(retrained.catalog.alive[r] for r in retrained.sketch_search(q[None], 400)[0])
    for vid in ("v003", "v004"):
        store.delete_video(vid)
    dropped = snapshot(store, options)
    assert dropped.sketch is None and not (dropped.root / "sketch.faiss").exists()  # 200 scenes left


def oracle(retriever, acc, qv, k=10):
    """Exact fused top k over every scene, with the retriever's calibration and prior."""
    cfg = retriever.config
    rows = np.flatnonzero(acc.catalog.alive)
    total = sum(cfg.weights[m] for m in qv)
    b, derived = retriever._take()
    cal = retriever._calibrations(b, qv)
    fused = sum(cfg.weights[m] * (acc.rows[m].take(rows) @ q - cal[m].mean) / cal[m].std for m, q in qv.items()) / total
    videos = retriever._video_level(b, derived)
    prior = videos.prior(qv, cfg.weights, videos.calibrations(qv, cfg.weights), np.arange(len(videos)))
    fused = fused + cfg.prior_weight * prior[videos.positions_of(acc.catalog.video_ids(rows))]
    return set(acc.catalog.scene_ids(rows[np.argsort(-fused)[:k]]))


def test_retriever_candidates_from_the_sketch_find_the_exact_fused_top(store, monkeypatch):
    n = 3000
    x = {m: embeddings(n, d, seed=10 + i) for i, (m, d) in enumerate(DIMS.items())}
    fill(store, x, 0, 60, 50)
    acc = snapshot(store, FaissOptions(sketch_threshold=1000))
    config = RetrievalConfig(merge_adjacent=False, top_videos=5, fused_pool=300, fused_candidates=60)
    retriever = HierarchicalRetriever(lambda: acc, {}, config)
    per_modality = []
    real_search = acc.search_keys
    monkeypatch.setattr(acc, "search_keys", lambda *a, **k: per_modality.append(a[0]) or real_search(*a, **k))
    rng = np.random.default_rng(1)
    recalls = []
    for i in range(15):
        target = rng.integers(n)
        qv = {m: v[target] + 0.8 * embeddings(1, v.shape[1], seed=200 + i)[0] for m, v in x.items()}
        qv = {m: (v / np.linalg.norm(v)).astype(np.float32) for m, v in qv.items()}
        hits = retriever.search_vectors(qv, None, 10)
        recalls.append(len(oracle(retriever, acc, qv) & {h.scene_id for h in hits}) / 10)
    assert acc.sketch is not None and not per_modality  # candidates came from the sketch alone
    # a batch of queries: one sketch scan for all of them, each query's hits as on its own
    queries = []
    for i in range(6):
        target = rng.integers(n)
        qv = {m: v[target] + 0.8 * embeddings(1, v.shape[1], seed=300 + i)[0] for m, v in x.items()}
        queries.append({m: (v / np.linalg.norm(v)).astype(np.float32) for m, v in qv.items()})
    queries[2] = {}  # an empty query in a batch gives no hits, and does not disturb the others
    scans = []
    real_sketch_search = acc.sketch_search
    monkeypatch.setattr(acc, "sketch_search", lambda q, k: scans.append(len(q)) or real_sketch_search(q, k))
    alone = [retriever.search_vectors(q, None, 10) for q in queries]
    together = retriever.search_vectors_many(queries, [None] * len(queries), 10)
    assert scans == [1] * 5 + [5]
    assert together[2] == []
    assert [[(h.scene_id, h.score) for h in hits] for hits in together] == [[(h.scene_id, h.score) for h in hits] for hits in alone]
    assert np.mean(recalls) >= 0.95, recalls

    # a filtered query goes per modality (exactly, when few scenes pass) and keeps to the filter
    hits = retriever.search_vectors(qv, None, 10, SceneFilter(video_ids=("v007",)))
    assert per_modality and hits and {h.video_id for h in hits} == {"v007"}

    # top videos too long to take whole are searched per modality within them, beside the sketch
    monkeypatch.setattr(hierarchical, "TOP_VIDEO_SCENES", 5)
    calls = []
    monkeypatch.setattr(acc, "search_keys", lambda m, q, k, f=None: calls.append((m, f)) or real_search(m, q, k, f))
    retriever.search_vectors(qv, None, 10)
    assert sorted(m for m, _ in calls) == ["text", "visual"] and all(len(f.video_ids) == 5 for _, f in calls)

    # a modality the sketch does not cover is searched on its own, and its hits survive narrowing
    acc.sketch.modalities = ("text",)
    monkeypatch.setattr(acc, "search_keys", lambda *a, **k: per_modality.append(a[0]) or real_search(*a, **k))
    per_modality.clear()
    pool = acc.sketch_search(acc.sketch_query({"text": qv["text"]})[None], config.fused_pool)[0]
    keys, _, protected = retriever._candidates(acc, qv, None, [], None, pool)
    assert per_modality == ["visual"] and protected and protected <= set(keys)


def test_no_sketch_for_a_large_store_without_vectors(store):
    """Scenes with no vectors (e.g. silent video, visual stage off) give nothing to sketch: the
    accelerator works without one instead of failing to train it."""
    for v in range(3):
        vid = f"s{v}"
        store.add_video(
            Video(vid, f"/data/{vid}.mp4", vid, VideoInfo(f"/data/{vid}.mp4", 40, 25, 8, 8, False, 1), 40, {}),
            [Scene(scene_id(vid, i), vid, f"/data/{vid}.mp4", i, float(i), float(i + 1), transcript="words") for i in range(40)],
        )
    acc = snapshot(store, FaissOptions(sketch_threshold=50))
    assert acc.sketch is None and acc.sketch_modalities == () and len(acc.catalog) == 120
