"""The search snapshot: the SearchBackend contract against LanceDB's own search (the reference),
incremental snapshots sharing files, a reader mid-query while newer snapshots are published,
two writers, and a store with keyframes answered in a fresh process without LanceDB."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import index.build as build_mod
from egorag.config import RetrievalConfig
from egorag.filters import SceneFilter
from egorag.schema import (
    EncoderFingerprint,
    Keyframes,
    Scene,
    Video,
    VideoInfo,
    scene_id,
)
from index import files
from index.build import build_snapshot
from index.lance import LanceSceneStore
from index.snapshot import Snapshot, Snapshots
from index.vectors import FaissOptions, TorchExactIndex
from retrieval.hierarchical import HierarchicalRetriever

DIM = 32


def clustered(n, dim=DIM, clusters=20, seed=0):
    """Unit vectors with a low intrinsic dimension (clusters in a 6-d subspace), like embeddings."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, 6)))[0].T
    centres = rng.standard_normal((clusters, 6))
    x = (centres[rng.integers(clusters, size=n)] + 0.4 * rng.standard_normal((n, 6))) @ basis
    x += 0.05 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def video(vid, n):
    return Video(vid, f"/data/{vid}.mp4", vid, VideoInfo(f"/data/{vid}.mp4", n, 25, 8, 8, False, 1), n, {})


def fill(store, vectors, videos=4, first=0):
    per = len(vectors) // videos
    for v in range(videos):
        vid = f"v{first + v:03d}"
        scenes = [Scene(scene_id(vid, i), vid, f"/data/{vid}.mp4", i, float(i), float(i + 1), transcript=f"scene {i} of {vid}",
                        vectors={"text": vectors[v * per + i]}) for i in range(per)]
        store.add_video(video(vid, per), scenes)


def snapshot(store, options=FaissOptions()) -> Snapshot:
    """Publish the store's snapshot and open it, as a fresh reader would."""
    build_snapshot(store, options)
    return Snapshot.open(files.newest(store.uri)[1], options)


@pytest.fixture
def store(tmp_path):
    return LanceSceneStore(tmp_path / "db", {"text": EncoderFingerprint("text", "test-hash", "h", DIM)})


def recall_at_k(approx, exact):
    return np.mean([len({i for i, _ in a} & {i for i, _ in e}) / max(1, len(e)) for a, e in zip(approx, exact)])


# -- the contract, against LanceDB's search ---------------------------------------------------

@pytest.mark.parametrize("kind, floor", [("flat", 0.99), ("ivf", 0.9), ("hnsw", 0.9)])
def test_snapshot_search_agrees_with_lancedb(store, kind, floor):
    fill(store, clustered(2000))
    snap = snapshot(store, FaissOptions(kind=kind, nprobe=8))
    queries = clustered(30, seed=3)
    got, want = snap.search("text", queries, 10), store.search("text", queries, 10)
    assert snap.columns["text"].kind == kind and recall_at_k(got, want) >= floor
    if kind == "flat":
        np.testing.assert_allclose([s for _, s in got[0]], [s for _, s in want[0]], atol=1e-5)
    where = SceneFilter(video_ids=("v001",), time_to=100.0)
    got, want = snap.search("text", queries[:3], 10, where), store.search("text", queries[:3], 10, where)
    assert [[i for i, _ in r] for r in got] == [[i for i, _ in r] for r in want]  # few rows pass: exact


def test_backend_answers_the_retrievers_questions_as_the_store_holds_them(store):
    vectors = clustered(300)
    fill(store, vectors, videos=3)
    snap = snapshot(store)
    q = clustered(1, seed=8)
    keys = [r for r, _ in snap.search_keys("text", q, 5)]
    want = [i for i, _ in store.search("text", q, 5)[0]]
    assert [m.scene_id for m in snap.meta(keys)] == want
    by_id = {s.scene_id: s for s in store.get_scenes(want, with_vectors=True)}
    np.testing.assert_allclose(snap.vectors("text", keys), np.stack([by_id[i].vectors["text"] for i in want]), atol=1e-6)
    assert [s.transcript for s in snap.scenes(keys)] == [by_id[i].transcript for i in want]
    assert snap.filter_keys(SceneFilter(video_ids=("v002",)), 1000) == list(range(200, 300))
    assert snap.text_search("scene 7 of v001", 3, None)[0][0] == 107
    codes, names = snap.video_codes(keys)
    assert list(names[codes]) == [i.split(":")[0] for i in want]
    assert snap.background_moments("text").n == 300
    assert [v.video_id for v in snap.video_table()] == ["v000", "v001", "v002"]


# -- snapshots over time ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_incremental_snapshots_share_files_and_apply_adds_deletes_and_reindexes(store, kind):
    vectors = clustered(800)
    fill(store, vectors[:600], videos=3)
    first = snapshot(store, FaissOptions(kind=kind))
    store.add_video(video("new", 1), [Scene(scene_id("new", 0), "new", "/data/new.mp4", 0, 0.0, 1.0, vectors={"text": vectors[700]})])
    store.delete_video("v000")
    again = store.scenes_of("v001", with_vectors=True)
    store.delete_video("v001")
    store.add_video(video("v001", 10), again[:10])  # same id, fewer scenes: a re-index
    second = snapshot(store, FaissOptions(kind=kind))
    assert second.generation == first.generation + 1
    [[top, *_]] = second.search("text", vectors[700:701], 5)
    assert top[0] == "new:00000" and top[1] == pytest.approx(1.0, abs=1e-5)
    assert all(not i.startswith("v000") for row in second.search("text", vectors[:5], 10) for i, _ in row)
    assert int((second.catalog.alive & second.catalog.has["text"]).sum()) == 211
    # the texts of the first batch are the same file (a hard link), the row copies one growing inode
    assert os.path.samefile(first.root / "texts-0.arrow", second.root / "texts-0.arrow")
    assert os.path.samefile(first.root / "text.f32", second.root / "text.f32")
    # and the first snapshot still answers as it did: its prefix of the row copies is untouched
    assert first.search("text", vectors[:1], 1)[0][0][0] == "v000:00000"


def test_a_reader_mid_query_keeps_its_snapshot_while_newer_ones_are_published_and_collected(store):
    vectors = clustered(400)
    fill(store, vectors[:300], videos=3)
    follower = Snapshots(store.uri, lambda wait: build_snapshot(store, FaissOptions(), wait))
    held = follower.current(0)  # a query takes its snapshot once
    before = held.search("text", vectors[:3], 5)
    for i in range(3):  # three more generations: the held one is removed from disk
        fill(store, vectors[300 + 30 * i : 330 + 30 * i], videos=1, first=10 + i)
        build_snapshot(store)
    assert not held.root.exists() and len(files.published(store.uri)) == files.KEEP
    assert held.search("text", vectors[:3], 5) == before  # still mapped: the same answers
    assert [s.transcript for s in held.scenes([0])] == ["scene 0 of v000"]
    newest = follower.current(0)
    assert newest.generation == held.generation + 3 and len(newest.video_table()) == 6


def test_a_reader_that_cannot_write_the_store_says_so(store, caplog):
    """A replica on a read-only mount: behind the store, it keeps answering from the snapshot it
    has, with a warning; with none at all, a clear error (never an empty answer)."""
    from egorag.errors import EgoragError

    def read_only(wait):
        raise PermissionError(f"{store.uri}/write.lock: read-only file system")

    fill(store, clustered(100), videos=2)
    with pytest.raises(EgoragError, match="none can be written here.*read-only file system"):
        Snapshots(store.uri, read_only).current()
    build_snapshot(store)
    replica = Snapshots(store.uri, read_only)
    held = replica.current(0)
    fill(store, clustered(40, seed=2), videos=1, first=5)  # a commit no snapshot describes
    with caplog.at_level("WARNING", logger="egorag"):
        assert replica.current(0) is held
    assert "cannot be rebuilt here" in caplog.text and len(held.video_table()) == 2


def test_two_writer_threads_end_with_one_snapshot_holding_both(tmp_path):
    fp = {"text": EncoderFingerprint("text", "test-hash", "h", DIM)}
    LanceSceneStore(tmp_path / "db", fp)
    vectors = clustered(400)
    errors = []

    def writer(first):
        try:
            store = LanceSceneStore(tmp_path / "db", fp)
            for v in range(4):
                fill(store, vectors[(first + v) * 25 : (first + v + 1) * 25], videos=1, first=first + v)
                build_snapshot(store)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f,)) for f in (0, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = LanceSceneStore(tmp_path / "db")
    newest = Snapshot.open(files.newest(store.uri)[1])
    assert newest.versions == files.lance_versions(store.uri)
    assert sorted(v.video_id for v in newest.video_table()) == sorted(v.video_id for v in store.videos()) == [f"v{i:03d}" for i in range(8)]


def test_opening_a_published_snapshot_builds_nothing(store, monkeypatch):
    fill(store, clustered(300))
    build_snapshot(store)

    def no_build(*a, **k):
        raise AssertionError("rebuilt instead of loading")

    monkeypatch.setattr(build_mod, "build_index", no_build)
    build_snapshot(LanceSceneStore(store.uri))  # describes the store already: nothing to do
    q = clustered(3, seed=5)
    reopened = Snapshot.open(files.newest(store.uri)[1])
    assert recall_at_k(reopened.search("text", q, 10), store.search("text", q, 10)) >= 0.99


def test_ivf_indexes_keep_no_direct_map(store):
    """A hashtable direct map is rebuilt on every open (50-100 ms per 1M-row column)."""
    import faiss

    fill(store, clustered(900)[:600], videos=3)
    snap = snapshot(store, FaissOptions(kind="ivf"))
    assert faiss.extract_index_ivf(snap.columns["text"].index).direct_map.type == faiss.DirectMap.NoMap
    store.delete_video("v000")
    after = snapshot(store, FaissOptions(kind="ivf"))
    assert after.columns["text"].ntotal == 400
    assert faiss.read_index(str(after.root / "text.faiss")).direct_map.type == faiss.DirectMap.NoMap


def test_files_are_arrow_faiss_or_row_copies_only(store):
    fill(store, clustered(300))
    snap = snapshot(store, FaissOptions(sketch_threshold=100))
    names = files.list_files(snap.root)
    assert names and all(n.endswith((".arrow", ".parquet", ".faiss", ".f32", ".u8")) for n in names), names
    assert set(files.read_manifest(snap.root)["files"]) == set(names)


# -- torch exact search -----------------------------------------------------------------------

def test_torch_blockwise_exact_matches_numpy():
    x = clustered(1000)
    q = clustered(7, seed=2)
    index = TorchExactIndex(x, device="cpu", dtype="float32", block=128)
    scores, ids = index.search(q, 10)
    want = np.argsort(-(q @ x.T), axis=1)[:, :10]
    assert (ids == want).mean() >= 0.99
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, ids, 1), atol=1e-5)


@pytest.mark.gpu
def test_torch_blockwise_exact_on_gpu():
    x = clustered(5000)
    q = clustered(64, seed=4)
    scores, ids = TorchExactIndex(x, device="cuda", block=1024).search(q, 10)
    want = np.argsort(-(q @ x.T), axis=1)[:, :10]
    assert (ids == want).mean() >= 0.99


def test_torch_mirror_returns_the_same_hits_after_deletes(store):
    fill(store, clustered(600), videos=3)
    store.delete_video("v001")
    snap = snapshot(store, FaissOptions(kind="flat", device="cpu"))
    queries = clustered(10, seed=11)
    on_cpu = snap.search("text", queries, 10)
    assert snap.columns["text"].attach_gpu("cpu") == "torch"  # the exact torch path, run on the CPU here
    mirrored = snap.search("text", queries, 10)
    assert recall_at_k(mirrored, on_cpu) >= 0.98  # fp16 scores: near-ties may swap at the edge
    assert [row[0][0] for row in mirrored] == [row[0][0] for row in on_cpu]
    assert all(not i.startswith("v001") for row in mirrored for i, _ in row)


# -- a store with keyframes, in a fresh process ----------------------------------------------

def keyframe_store(db):
    """Two videos with text, visual (keyframes, 4-6 per scene, their times) and global vectors."""
    fps = {"text": EncoderFingerprint("text", "t", "h", DIM), "visual": EncoderFingerprint("visual", "v", "h", DIM)}
    store = LanceSceneStore(db, fps)
    rng = np.random.default_rng(1)
    for v in range(2):
        vid = f"kf{v}"
        scenes = []
        for i in range(6):
            kf = clustered(4 + i % 3, seed=100 * v + i)
            times = tuple(float(i) + 0.2 * j for j in range(len(kf)))
            mean = kf.mean(0) / np.linalg.norm(kf.mean(0))
            scenes.append(Scene(scene_id(vid, i), vid, f"/data/{vid}.mp4", i, float(i), float(i + 1), transcript=f"scene {i}",
                                vectors={"text": clustered(1, seed=rng.integers(1 << 30))[0], "visual": mean},
                                keyframes=Keyframes(kf, times)))
        g = {"text": clustered(1, seed=v + 50)[0], "visual": clustered(1, seed=v + 60)[0]}
        store.add_video(Video(vid, f"/data/{vid}.mp4", vid, VideoInfo(f"/data/{vid}.mp4", 6, 25, 8, 8, False, 1), 6, g), scenes)
    build_snapshot(store)
    return store


FRESH = """
import json, sys
import numpy as np
from egorag.config import RetrievalConfig
from index.snapshot import Snapshots
from retrieval.hierarchical import HierarchicalRetriever
spec = json.loads(sys.argv[1])
snapshots = Snapshots(spec["db"], build=lambda wait: False)
retriever = HierarchicalRetriever(snapshots.current, {}, RetrievalConfig())
qv = {m: np.asarray(v, np.float32) for m, v in spec["qv"].items()}
hits = retriever.search_vectors(qv, spec["text"], 3)
print(json.dumps({"lancedb": "lancedb" in sys.modules, "hits": [[h.scene_id, h.moment, h.similarities.get("visual")] for h in hits]}))
"""


@pytest.mark.parametrize("query", ["text", "image"])
def test_a_store_with_keyframes_answers_in_a_fresh_process_without_lancedb(tmp_path, query):
    store = keyframe_store(tmp_path / "db")
    [scene] = store.get_scenes(["kf1:00004"], with_vectors=True)
    target = scene.keyframes.vectors[2]  # one keyframe of one scene: MaxSim must find it and its time
    qv = {"visual": target.tolist()} if query == "image" else {"visual": target.tolist(), "text": scene.vectors["text"].tolist()}
    spec = {"db": str(store.uri), "qv": qv, "text": "scene 4" if query == "text" else None}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = json.loads(subprocess.run([sys.executable, "-c", FRESH, json.dumps(spec)], capture_output=True, text=True, check=True, env=env).stdout)
    assert out["lancedb"] is False
    top, moment, visual = out["hits"][0]
    assert top == "kf1:00004" and moment == pytest.approx(4.4, abs=1e-3) and visual == pytest.approx(1.0, abs=1e-4)
    # the same answer in this process, through LanceDB-free code either way
    here = HierarchicalRetriever(Snapshots(store.uri, build=lambda wait: False).current, {}, RetrievalConfig())
    assert here.search_vectors({m: np.asarray(v, np.float32) for m, v in qv.items()}, spec["text"], 3)[0].scene_id == top


@pytest.mark.parametrize("fault", ["truncate", "zero", "delete", "corrupt"])
def test_a_damaged_sketch_file_is_named_and_the_snapshot_rebuilt(tmp_path, fault, caplog):
    """The fault harness's library is too small for a fused sketch: its files, damaged here one
    at a time, are caught by the manifest like every other file."""
    import shutil

    from test_faults import damage

    options = FaissOptions(sketch_threshold=100)
    pristine = LanceSceneStore(tmp_path / "pristine", {"text": EncoderFingerprint("text", "test-hash", "h", DIM)})
    fill(pristine, clustered(400), videos=4)
    clean = snapshot(pristine, options)
    assert clean.sketch is not None
    queries = [{"text": q} for q in clustered(5, seed=7)]
    want = [[h.scene_id for h in HierarchicalRetriever(lambda: clean, {}).search_vectors(q, None, 5)] for q in queries]
    names = [n for n in files.list_files(clean.root) if n.startswith("sketch")]
    assert len(names) == 3
    for name in names:
        db = tmp_path / f"{fault}-{name}"
        shutil.copytree(pristine.uri, db)
        damage(files.newest(db)[1] / name, fault)
        follower = Snapshots(db, lambda wait, db=db: build_snapshot(LanceSceneStore(db), options, wait), options)
        caplog.clear()
        with caplog.at_level("WARNING", logger="egorag"):
            got = [[h.scene_id for h in HierarchicalRetriever(follower.current, {}).search_vectors(q, None, 5)] for q in queries]
        assert name in caplog.text, f"{name} {fault}: not said"
        assert got == want and follower.current().sketch is not None


def test_keyframe_times_missing_or_mismatched_are_nan_not_shifted():
    import pyarrow as pa

    from index.build import _keyframe_times

    times = _keyframe_times(pa.array([[1.0, 2.0], None, [5.0, 6.0, 7.0], [9.0]], pa.list_(pa.float64())), np.array([2, 2, 2, 1]))
    np.testing.assert_array_equal(times, np.array([1, 2, np.nan, np.nan, np.nan, np.nan, 9], np.float32))


def test_reading_rows_ahead_changes_no_answer(tmp_path, monkeypatch):
    """A store larger than half the memory asks the kernel for a query's rows ahead: the same
    vectors, keyframes and hits as without."""
    import index.snapshot as snapshot_mod

    store = keyframe_store(tmp_path / "db")
    root = files.newest(store.uri)[1]
    plain = Snapshot.open(root)
    monkeypatch.setattr(snapshot_mod, "PREFETCH_ABOVE", 0.0)
    ahead = Snapshot.open(root)
    assert ahead.prefetch and not plain.prefetch
    keys = list(range(len(plain.catalog)))
    for m in ("text", "visual"):
        assert np.array_equal(plain.vectors(m, keys), ahead.vectors(m, keys))
    a, b = plain.keyframes(keys), ahead.keyframes(keys)
    assert a.keys() == b.keys() and all(np.array_equal(a[k].vectors, b[k].vectors) and a[k].times == b[k].times for k in a)
    ahead.keyframe_vectors.prefetch([(len(ahead.keyframe_vectors) - 1, 1), (0, len(ahead.keyframe_vectors))])  # to the file's end
    qv = {"text": clustered(1, seed=7)[0], "visual": clustered(1, seed=8)[0]}
    hits = [HierarchicalRetriever(lambda s=s: s, {}).search_vectors(qv, "scene 3", 5) for s in (plain, ahead)]
    assert [(h.scene_id, h.score, h.moment) for h in hits[0]] == [(h.scene_id, h.score, h.moment) for h in hits[1]]
