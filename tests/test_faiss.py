"""FAISS accelerator: agreement with exact search, incremental updates, persistence, filters."""

import numpy as np
import pytest

import index.faiss as faiss_mod
from egorag.filters import SceneFilter
from egorag.schema import EncoderFingerprint, Scene, Video, VideoInfo, scene_id
from index.faiss import FaissAccelerator, FaissOptions
from index.lance import LanceSceneStore
from index.torch_exact import TorchExactIndex

DIM = 32


def clustered(n, dim=DIM, clusters=20, seed=0):
    """Unit vectors with a low intrinsic dimension (clusters in a 6-d subspace), like embeddings."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, 6)))[0].T
    centres = rng.standard_normal((clusters, 6))
    x = (centres[rng.integers(clusters, size=n)] + 0.4 * rng.standard_normal((n, 6))) @ basis
    x += 0.05 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fill(store, vectors, videos=4):
    per = len(vectors) // videos
    for v in range(videos):
        vid = f"v{v:03d}"
        scenes = [
            Scene(scene_id(vid, i), vid, f"/data/{vid}.mp4", i, float(i), float(i + 1), vectors={"text": vectors[v * per + i]})
            for i in range(per)
        ]
        store.add_video(Video(vid, f"/data/{vid}.mp4", vid, VideoInfo(f"/data/{vid}.mp4", per, 25, 8, 8, False, 1), per, {}), scenes)


@pytest.fixture
def store(tmp_path):
    return LanceSceneStore(tmp_path / "db", {"text": EncoderFingerprint("text", "test-hash", "h", DIM)})


def recall_at_k(approx, exact):
    return np.mean([len({i for i, _ in a} & {i for i, _ in e}) / max(1, len(e)) for a, e in zip(approx, exact)])


def test_flat_matches_exact_search(store):
    fill(store, clustered(400))
    acc = FaissAccelerator(store)
    queries = clustered(20, seed=9)
    got, want = acc.search("text", queries, 10), store.search("text", queries, 10)
    assert recall_at_k(got, want) >= 0.99
    assert acc.columns["text"].kind == "flat"
    np.testing.assert_allclose([s for _, s in got[0]], [s for _, s in want[0]], atol=1e-5)


@pytest.mark.parametrize("kind, floor", [("ivf", 0.9), ("hnsw", 0.9)])
def test_approximate_indexes_measured_recall(store, kind, floor):
    fill(store, clustered(2000))
    acc = FaissAccelerator(store, FaissOptions(kind=kind, nprobe=8))
    queries = clustered(50, seed=3)
    recall = recall_at_k(acc.search("text", queries, 10), store.search("text", queries, 10))
    assert acc.columns["text"].kind == kind and recall >= floor, recall


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_incremental_add_delete_and_filters(store, kind):
    vectors = clustered(800)
    fill(store, vectors[:600], videos=3)
    acc = FaissAccelerator(store, FaissOptions(kind=kind))
    acc.sync()
    store.add_video(
        Video("new", "/data/new.mp4", "new", VideoInfo("/data/new.mp4", 1, 25, 8, 8, False, 1), 1, {}),
        [Scene(scene_id("new", 0), "new", "/data/new.mp4", 0, 0.0, 1.0, vectors={"text": vectors[700]})],
    )
    [[top, *_]] = acc.search("text", vectors[700:701], 5)
    assert top[0] == "new:00000" and top[1] == pytest.approx(1.0, abs=1e-5)
    store.delete_video("v000")
    hits = acc.search("text", vectors[:5], 10)
    assert all(not i.startswith("v000") for row in hits for i, _ in row)
    assert int((acc.catalog.alive & acc.catalog.has["text"]).sum()) == 401
    only = acc.search("text", vectors[250:251], 10, SceneFilter(video_ids=("v001",)))[0]
    assert only and {i.split(":")[0] for i, _ in only} == {"v001"}
    before = acc.search("text", vectors[250:251], 50, SceneFilter(time_to=10.0))[0]
    assert before and all(int(i.split(":")[1]) < 10 for i, _ in before)


def test_ivf_indexes_keep_no_direct_map(store, caplog):
    """A hashtable direct map is rebuilt on every open (50-100 ms per 1M-row column), so IVF
    indexes are built without one; an index file rewritten by anything else (here: with one) no
    longer matches the manifest and is rebuilt, without it."""
    import faiss

    vectors = clustered(900)
    fill(store, vectors[:600], videos=3)
    acc = FaissAccelerator(store, FaissOptions(kind="ivf"))
    acc.sync()
    assert faiss.extract_index_ivf(acc.columns["text"].index).direct_map.type == faiss.DirectMap.NoMap
    path = acc.root / "text.faiss"
    old = faiss.read_index(str(path))
    old.set_direct_map_type(faiss.DirectMap.Hashtable)
    faiss.write_index(old, str(path))
    reopened = FaissAccelerator(LanceSceneStore(store.uri), FaissOptions(kind="ivf"))
    reopened.sync()
    assert "text.faiss has" in caplog.text and "rebuilding them from the store" in caplog.text
    assert faiss.extract_index_ivf(reopened.columns["text"].index).direct_map.type == faiss.DirectMap.NoMap
    store.delete_video("v000")  # through another handle: followed at the next sync
    reopened.sync()
    hits = reopened.search("text", vectors[:5], 10)
    assert hits[0] and all(not i.startswith("v000") for row in hits for i, _ in row)
    assert faiss.read_index(str(path)).direct_map.type == faiss.DirectMap.NoMap
    assert reopened.columns["text"].ntotal == 400


def test_persisted_index_reopens_without_rebuild(store, monkeypatch):
    fill(store, clustered(300))
    FaissAccelerator(store).sync()
    assert (store.uri and (FaissAccelerator(store).root / "text.faiss").exists())

    def no_build(*a, **k):
        raise AssertionError("rebuilt instead of loading")

    monkeypatch.setattr(faiss_mod, "build_index", no_build)
    reopened = FaissAccelerator(LanceSceneStore(store.uri))
    q = clustered(3, seed=5)
    assert recall_at_k(reopened.search("text", q, 10), store.search("text", q, 10)) >= 0.99


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
    vectors = clustered(600)
    fill(store, vectors, videos=3)
    acc = FaissAccelerator(store, FaissOptions(kind="flat", device="cpu"))
    acc.sync()
    store.delete_video("v001")
    acc.sync()
    column = acc.columns["text"]
    queries = clustered(10, seed=11)
    on_cpu = acc.search("text", queries, 10)
    assert column.attach_gpu("cpu") == "torch"  # the exact torch path, run on the CPU here
    mirrored = acc.search("text", queries, 10)
    assert recall_at_k(mirrored, on_cpu) >= 0.98  # fp16 scores: near-ties may swap at the edge
    assert [row[0][0] for row in mirrored] == [row[0][0] for row in on_cpu]
    assert all(not i.startswith("v001") for row in mirrored for i, _ in row)


def test_backend_protocol_matches_lance_store(store):
    """The accelerator and the Lance store answer the retriever's questions alike."""
    vectors = clustered(300)
    fill(store, vectors, videos=3)
    acc = FaissAccelerator(store)
    q = clustered(1, seed=8)
    fast = acc.search_keys("text", q, 5)
    slow = store.search_keys("text", q, 5)
    assert acc.catalog.scene_ids([r for r, _ in fast]) == [i for i, _ in slow]
    metas = acc.meta([r for r, _ in fast])
    assert [m.scene_id for m in metas] == [i for i, _ in slow]
    assert all(m.video_path == f"/data/{m.video_id}.mp4" and m.end == m.start + 1 for m in metas)
    np.testing.assert_allclose(acc.vectors("text", [r for r, _ in fast]), store.vectors("text", [i for i, _ in slow]), atol=1e-6)
    assert acc.background("text", 50).shape == (50, DIM)
    assert acc.catalog.row_of(slow[0][0]) == fast[0][0]
    assert [s.scene_id for s in acc.scenes([fast[0][0]])] == [slow[0][0]]


def test_reindexed_video_is_replaced_in_the_catalog(store):
    vectors = clustered(200)
    fill(store, vectors, videos=2)
    acc = FaissAccelerator(store)
    acc.sync()
    video = store.get_video("v000")
    scenes = store.scenes_of("v000", with_vectors=True)
    store.delete_video("v000")
    store.add_video(video, scenes[:10])  # same id, fewer scenes: a re-index
    acc.sync()
    alive_v000 = [m for m in acc.meta(np.flatnonzero(acc.catalog.alive)) if m.video_id == "v000"]
    assert len(alive_v000) == 10


def test_row_vectors_are_memory_mapped_grown_and_refilled(store):
    x = clustered(300)
    fill(store, x[:200], videos=2)
    acc = FaissAccelerator(store)
    acc.sync()
    path = acc.root / "text.f32"
    assert path.stat().st_size == 200 * DIM * 4
    np.testing.assert_allclose(acc.vectors("text", [0, 150]), x[[0, 150]], atol=1e-6)

    reopened = FaissAccelerator(LanceSceneStore(store.uri))
    reopened.sync()
    assert isinstance(reopened.rows["text"].data, np.memmap)  # mapped, not read into memory
    fill_more = LanceSceneStore(store.uri)
    vid = "v900"
    fill_more.add_video(
        Video(vid, f"/data/{vid}.mp4", vid, VideoInfo(f"/data/{vid}.mp4", 100, 25, 8, 8, False, 1), 100, {}),
        [Scene(scene_id(vid, i), vid, f"/data/{vid}.mp4", i, float(i), float(i + 1), vectors={"text": x[200 + i]}) for i in range(100)],
    )
    reopened.sync()  # grows the mapped file in place
    row = reopened.catalog.row_of(scene_id(vid, 7))
    import pyarrow as pa

    assert reopened.catalog.locate(pa.table({"video_id": [vid, "nope"], "scene_index": [7, 0]})).tolist() == [row, -1]
    np.testing.assert_allclose(reopened.vectors("text", [row])[0], x[207], atol=1e-6)
    assert path.stat().st_size == 300 * DIM * 4

    path.unlink()  # a store indexed before row copies existed: refilled from LanceDB, not rebuilt
    again = FaissAccelerator(LanceSceneStore(store.uri))
    again.sync()
    np.testing.assert_allclose(again.vectors("text", [row])[0], x[207], atol=1e-6)
    assert again.search("text", x[207][None], 1)[0][0][0] == scene_id(vid, 7)


def test_hit_texts_come_from_mapped_segments_not_lancedb(store, monkeypatch):
    import index.texts as texts_mod

    monkeypatch.setattr(texts_mod, "MAX_SEGMENTS", 2)
    x = clustered(40)

    def add(vid, first):
        store.add_video(
            Video(vid, f"/data/{vid}.mp4", vid, VideoInfo(f"/data/{vid}.mp4", 10, 25, 8, 8, False, 1), 10, {}),
            [Scene(scene_id(vid, i), vid, f"/data/{vid}.mp4", i, float(i), float(i + 1), transcript=f"{vid} says {i}",
                   caption=f"{vid} shows {i}", vectors={"text": x[first + i]}) for i in range(10)],
        )

    acc = FaissAccelerator(store)
    for n, vid in enumerate(["a", "b", "c", "d"]):  # one segment per sync; merged past two
        add(vid, 10 * n)
        acc.sync()
    assert sorted(p.name for p in acc.root.glob("texts-*.arrow")) == ["texts-0.arrow", "texts-30.arrow"]
    monkeypatch.setattr(LanceSceneStore, "get_scenes", lambda *a, **k: pytest.fail("asked LanceDB for hit texts"))
    reopened = FaissAccelerator(LanceSceneStore(store.uri))
    reopened.sync()
    rows = [reopened.catalog.row_of(scene_id(v, i)) for v, i in (("d", 3), ("a", 0), ("c", 9))]
    assert [(s.scene_id, s.transcript, s.caption) for s in reopened.scenes(rows)] == [
        ("d:00003", "d says 3", "d shows 3"), ("a:00000", "a says 0", "a shows 0"), ("c:00009", "c says 9", "c shows 9"),
    ]
    for p in reopened.root.glob("texts-*.arrow"):  # a store indexed before text segments existed
        p.unlink()
    again = FaissAccelerator(LanceSceneStore(store.uri))
    monkeypatch.undo()
    again.sync()
    assert [s.transcript for s in again.scenes(rows)] == ["d says 3", "a says 0", "c says 9"]


@pytest.mark.parametrize("kind", ["ivf", "flat"])
def test_reopened_store_accepts_new_videos_and_stays_readable(store, kind):
    """A reopened IVF or flat index is memory-mapped read-only: adding to it aborts the process
    (as it did for IVF), and writing it back saved only a reference to the mapped file."""
    x = clustered(2100)
    fill(store, x[:2000], videos=4)
    FaissAccelerator(store, FaissOptions(kind=kind)).sync()
    size = (store.uri and FaissAccelerator(store).root / "text.faiss").stat().st_size
    reopened = FaissAccelerator(LanceSceneStore(store.uri), FaissOptions(kind=kind))
    reopened.sync()
    assert reopened.columns["text"].mapped_from is not None  # opened without reading the vectors
    vid = "v900"
    LanceSceneStore(store.uri).add_video(
        Video(vid, f"/data/{vid}.mp4", vid, VideoInfo(f"/data/{vid}.mp4", 100, 25, 8, 8, False, 1), 100, {}),
        [Scene(scene_id(vid, i), vid, f"/data/{vid}.mp4", i, float(i), float(i + 1), vectors={"text": x[2000 + i]}) for i in range(100)],
    )
    reopened.sync()
    assert reopened.search("text", x[2005:2006], 1)[0][0][0] == scene_id(vid, 5)
    assert (reopened.root / "text.faiss").stat().st_size > size  # the lists were written, not a reference
    again = FaissAccelerator(LanceSceneStore(store.uri), FaissOptions(kind=kind))
    assert again.search("text", x[2005:2006], 1)[0][0][0] == scene_id(vid, 5)
    assert recall_at_k(again.search("text", x[:20], 10), store.search("text", x[:20], 10)) >= 0.9


def test_lost_index_file_is_rebuilt_from_the_row_copies(store, caplog):
    x = clustered(300)
    fill(store, x, videos=3)
    acc = FaissAccelerator(store)
    acc.sync()
    (acc.root / "text.faiss").unlink()
    again = FaissAccelerator(LanceSceneStore(store.uri))
    with caplog.at_level("WARNING", logger="egorag"):
        got = again.search("text", x[:5], 10)
    assert "text.faiss is missing" in caplog.text and "rebuilding them from the store" in caplog.text
    assert recall_at_k(got, store.search("text", x[:5], 10)) >= 0.99
    assert (again.root / "text.faiss").exists()


def test_calibration_moments_are_kept_for_the_next_process_until_the_store_changes(store, monkeypatch):
    """A restarted process's first query takes the calibration moments from the file the last
    one left (the same numbers as drawing the sample), not from scattered rows; a changed store
    draws them again."""
    from egorag.stats import Moments

    vectors = clustered(800)
    fill(store, vectors[:600], videos=3)
    first = FaissAccelerator(store)
    first.sync()
    drawn = first.background_moments("text", 256)
    want = Moments.of(first.background("text", 256))
    np.testing.assert_array_equal(drawn.cov, want.cov)
    assert (first.root / "kept" / "background-text.npz").exists()

    reopened = FaissAccelerator(store)
    reopened.sync()
    monkeypatch.setattr(reopened, "background", lambda *a: pytest.fail("the sample was read again"))
    kept = reopened.background_moments("text", 256)
    np.testing.assert_array_equal(kept.mean, want.mean)
    np.testing.assert_array_equal(kept.cov, want.cov)
    assert kept.n == want.n == 256
    monkeypatch.undo()

    fill_more = vectors[600:]  # a new video: the moments are drawn again, from the new state
    store.add_video(Video("v9", "/data/v9.mp4", "v9", VideoInfo("/data/v9.mp4", 200, 25, 8, 8, False, 1), 200, {}),
                    [Scene(scene_id("v9", i), "v9", "/data/v9.mp4", i, float(i), float(i + 1), vectors={"text": fill_more[i]}) for i in range(200)])
    reopened.sync()
    redrawn = reopened.background_moments("text", 256)
    np.testing.assert_array_equal(redrawn.cov, Moments.of(reopened.background("text", 256)).cov)
    assert not np.array_equal(redrawn.cov, want.cov)


def test_search_sees_own_writes_at_once_and_other_processes_within_follow_s(store, monkeypatch):
    """The store contract's search checks for other processes' writes at most every FOLLOW_S
    (the check costs about a third of a large column's search); its own writes show at once."""
    import index.faiss_queries as queries_mod

    def one_scene(vid, vector):
        return (Video(vid, f"/data/{vid}.mp4", vid, VideoInfo(f"/data/{vid}.mp4", 1, 25, 8, 8, False, 1), 1, {}),
                [Scene(scene_id(vid, 0), vid, f"/data/{vid}.mp4", 0, 0.0, 1.0, vectors={"text": vector})])

    vectors = clustered(400)
    fill(store, vectors[:300], videos=3)
    mine = LanceSceneStore(store.uri)
    acc = FaissAccelerator(mine)
    acc.search("text", vectors[:1], 5)
    monkeypatch.setattr(queries_mod, "FOLLOW_S", 3600.0)
    syncs = []
    real_sync = acc.sync
    monkeypatch.setattr(acc, "sync", lambda: syncs.append(1) or real_sync())
    for q in vectors[:10]:
        acc.search("text", q[None], 5)
    assert not syncs  # nothing written: no check

    mine.add_video(*one_scene("own", vectors[350]))  # through the accelerator's own store handle
    assert acc.search("text", vectors[350:351], 1)[0][0][0] == "own:00000"
    store.add_video(*one_scene("other", vectors[360]))  # through another handle: another process
    assert acc.search("text", vectors[360:361], 1)[0][0][0] != "other:00000"  # not looked for yet
    monkeypatch.setattr(queries_mod, "FOLLOW_S", 0.0)
    assert acc.search("text", vectors[360:361], 1)[0][0][0] == "other:00000"


def test_an_unreadable_kept_file_is_derived_again(store):
    fill(store, clustered(300), videos=3)
    acc = FaissAccelerator(store)
    acc.sync()
    want = acc.background_moments("text", 64)
    path = acc.root / "kept" / "background-text.npz"
    path.write_bytes(path.read_bytes()[:100])  # a torn copy, a bad disk
    again = FaissAccelerator(LanceSceneStore(store.uri))
    again.sync()
    got = again.background_moments("text", 64)
    np.testing.assert_array_equal(got.cov, want.cov)
    with np.load(path) as z:  # kept again
        np.testing.assert_array_equal(z["cov"], want.cov)


@pytest.mark.parametrize("name", ["catalog.parquet", "text.faiss", "texts-0.arrow"])
def test_an_unreadable_index_file_is_rebuilt_from_the_store_not_fatal(store, name, caplog):
    """A torn copy or a bad disk loses nothing: the file is rebuilt from the store (or the row
    copies), with a warning naming it, and the answers are the same."""
    vectors = clustered(400)
    fill(store, vectors, videos=4)
    acc = FaissAccelerator(store)
    queries = vectors[::40]
    want = acc.search("text", queries, 10)
    want_ids = [s.scene_id for s in acc.scenes([0, 399])]  # before the damage: acc maps these files
    path = acc.root / name
    assert path.exists()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="egorag"):
        reopened = FaissAccelerator(LanceSceneStore(store.uri))
        got = reopened.search("text", queries, 10)
    assert str(path) in caplog.text and "rebuilding them from the store" in caplog.text
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in want]
    assert [s.scene_id for s in reopened.scenes([0, 399])] == want_ids
    again = FaissAccelerator(LanceSceneStore(store.uri))  # rewritten: read without a warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="egorag"):
        again.sync()
    assert "cannot be read" not in caplog.text
