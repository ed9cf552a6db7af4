"""The LanceDB scene store: the system of record (and the reference search the snapshot is tested against)."""

import numpy as np
import pyarrow as pa
import pytest

from egorag.errors import IndexMismatchError
from egorag.filters import SceneFilter
from egorag.schema import (
    EncoderFingerprint,
    Scene,
    Video,
    VideoInfo,
    rows_to_table,
    scene_id,
)
from index.lance import LanceSceneStore, StoreNotFoundError

DIM = 8
FPS = {
    "text": EncoderFingerprint("text", "test-hash", "h", DIM),
    "visual": EncoderFingerprint("visual", "open-clip", "tiny", DIM),
}


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[i % DIM] = 1.0
    return v


def make_video(vid: str, path: str, n: int, offset: int = 0, complete_vectors=True):
    scenes = [
        Scene(
            scene_id(vid, i), vid, path, i, 10.0 * i, 10.0 * (i + 1),
            transcript=f"scene {i} of {vid}" + (" zorblax" if i == 1 and vid == "vb" else ""),
            vectors={"text": unit(i + offset), "visual": unit(i + offset + 1) if i % 2 == 0 else None},
        )
        for i in range(n)
    ]
    info = VideoInfo(path, 10.0 * n, 25.0, 64, 48, True, 123)
    video = Video(vid, path, vid * 2, info, n, {"text": unit(offset), "visual": unit(offset + 1)})
    return video, scenes


@pytest.fixture
def store(tmp_path):
    return LanceSceneStore(tmp_path / "db", FPS)


@pytest.fixture
def filled(store):
    store.add_video(*make_video("va", "/videos/a.mp4", 3))
    store.add_video(*make_video("vb", "/videos/sub/b.mp4", 3, offset=3))
    return store


def test_add_get_and_list(filled):
    assert [v.video_id for v in filled.videos()] == ["va", "vb"]
    v = filled.get_video("vb")
    assert v.path == "/videos/sub/b.mp4" and v.n_scenes == 3 and v.info.has_audio
    np.testing.assert_allclose(v.global_vectors["text"], unit(3))
    scenes = filled.get_scenes(["vb:00001", "va:00000", "nope"], with_vectors=True)
    assert [s.scene_id for s in scenes] == ["vb:00001", "va:00000"]
    assert scenes[0].transcript.endswith("zorblax") and scenes[0].start == 10.0
    np.testing.assert_allclose(scenes[0].vectors["text"], unit(4))
    assert scenes[0].vectors["visual"] is None


def test_search_ranks_by_cosine_and_skips_null_vectors(filled):
    q = unit(4) + 0.5 * unit(5)
    q /= np.linalg.norm(q)
    [hits] = filled.search("text", q[None], k=3)
    assert hits[0][0] == "vb:00001" and hits[0][1] == pytest.approx(float(q @ unit(4)), abs=1e-5)
    assert hits[1][0] == "vb:00002"
    [visual] = filled.search("visual", unit(1)[None], k=10)
    assert {i for i, _ in visual} == {"va:00000", "va:00002", "vb:00000", "vb:00002"}  # odd scenes have none


def test_filters(filled):
    q = unit(0)[None]
    only_b = filled.search("text", q, 10, SceneFilter(video_ids=("vb",)))[0]
    assert {i.split(":")[0] for i, _ in only_b} == {"vb"}
    glob = filled.search("text", q, 10, SceneFilter(path_glob="/videos/sub/*"))[0]
    assert {i for i, _ in glob} == {"vb:00000", "vb:00001", "vb:00002"}
    before = filled.search("text", q, 10, SceneFilter(time_to=15.0))[0]
    assert {i for i, _ in before} == {"va:00000", "va:00001", "vb:00000", "vb:00001"}
    window = filled.search("text", q, 10, SceneFilter(time_from=12.0, time_to=25.0))[0]
    assert {i for i, _ in window} == {"va:00001", "va:00002", "vb:00001", "vb:00002"}
    scene = filled.get_scenes(["va:00001"])[0]
    assert SceneFilter(time_to=15.0).matches(scene) and not SceneFilter(time_from=20.0).matches(scene)


def test_delete_removes_video_and_scenes(filled):
    assert filled.delete_video("va") is True
    assert filled.delete_video("va") is False
    assert [v.video_id for v in filled.videos()] == ["vb"]
    assert filled.count_scenes() == 3
    assert all(i.startswith("vb") for i, _ in filled.search("text", unit(0)[None], 10)[0])


def test_incomplete_video_is_invisible_and_purged(filled, store):
    _, scenes = make_video("vc", "/videos/c.mp4", 2, offset=6)
    store._scenes.add(rows_to_table([s.to_row() for s in scenes], store._scenes.schema))
    assert "vc" not in store.complete_ids()
    from index.build import build_snapshot
    from index.files import newest
    from index.snapshot import Snapshot
    from retrieval.hierarchical import HierarchicalRetriever

    build_snapshot(store)
    snap = Snapshot.open(newest(store.uri)[1])
    hits = HierarchicalRetriever(lambda: snap, {}).search_vectors({"text": unit(6)}, "scene", k=10)  # its best-matching scene is no result
    assert hits and all(h.video_id != "vc" for h in hits)
    assert store.purge_incomplete() == 1
    assert store.count_scenes() == 6


def test_bm25_text_search(filled):
    assert filled.text_search("zorblax", 5) == []  # no index built yet: BM25 is off, not an error
    filled.build_indexes(full_text=True)
    hits = filled.text_search("zorblax", 5)
    assert [i for i, _ in hits] == ["vb:00001"] and hits[0][1] > 0
    assert filled.text_search("zorblax", 5, SceneFilter(video_ids=("va",))) == []


def test_vectors_for_snapshots(filled):
    ids, vecs = filled.scene_vectors("visual")
    assert len(ids) == 4 and vecs.shape == (4, DIM) and vecs.dtype == np.float32
    videos = filled.videos_table()
    assert sorted(videos.column("video_id").to_pylist()) == ["va", "vb"]
    assert videos.column("text_vec").type.list_size == DIM and videos.column("text_vec").null_count == 0


def test_reopen_checks_fingerprint(filled, tmp_path):
    uri = filled.uri
    assert LanceSceneStore(uri).fingerprints == FPS
    other = dict(FPS, text=EncoderFingerprint("text", "test-hash", "h", 16))
    with pytest.raises(IndexMismatchError, match="16d"):
        LanceSceneStore(uri, other)
    with pytest.raises(StoreNotFoundError):
        LanceSceneStore(tmp_path / "nothing-here")


def test_bulk_arrow_ingest(store):
    from egorag.schema import rows_to_table

    va, sa = make_video("va", "/videos/a.mp4", 3)
    vb, sb = make_video("vb", "/videos/b.mp4", 2, offset=3)
    scenes = rows_to_table([s.to_row() for s in sa + sb], store._scenes.schema)
    videos = rows_to_table([store._video_row(v) for v in (va, vb)], store._videos.schema)
    store.add_arrow(videos, scenes.drop_columns(["keyframe_vecs", "keyframe_times", "keyframe_jpegs"]))
    assert [v.video_id for v in store.videos()] == ["va", "vb"] and store.count_scenes() == 5
    assert store.get_scenes(["va:00000"], with_vectors=True)[0].keyframes is None
    with pytest.raises(ValueError, match=r"missing \['fps'\]"):
        store.add_arrow(videos.drop_columns(["fps"]), scenes)
    with pytest.raises(ValueError, match="unknown columns"):
        store.add_arrow(videos.append_column("bogus", pa.array([1, 2])), scenes)


def test_bm25_depends_on_content_not_history(tmp_path, library):
    """BM25's statistics count the live scenes only: after a delete, scores equal a store that
    never held the deleted video."""
    from writer_proc import engine

    history, fresh = engine(str(tmp_path / "history")), engine(str(tmp_path / "fresh"))
    history.index([library])
    history.delete([str(library / "v6.mp4")])
    fresh.index([library / f"v{n}.mp4" for n in (3, 4, 5)])
    for query in ("volcano lava", "honey bees hive", "piano melody concert"):
        a, b = history.search(query, k=5).hits, fresh.search(query, k=5).hits
        assert [h.scene_id for h in a] == [h.scene_id for h in b] and a[0].similarities.get("bm25")
        assert [h.similarities.get("bm25") for h in a] == pytest.approx([h.similarities.get("bm25") for h in b])


def test_a_store_without_the_newer_text_columns_still_searches(tmp_path, library):
    """A store made before ``screen_text`` and ``moments`` existed reads them as empty."""
    import shutil

    from writer_proc import engine

    from index.lance import LanceSceneStore

    db = tmp_path / "db"
    engine(str(db)).index([library / "v4.mp4"])
    LanceSceneStore(db)._scenes.drop_columns(["screen_text", "moments"])
    shutil.rmtree(db / "snapshots")
    hit = engine(str(db)).search("honey bees hive", k=1).hits[0]
    assert "honey" in hit.transcript and hit.screen_text == "" and hit.moment is None
