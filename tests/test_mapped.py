"""The mapped store: a query in a fresh process needs no LanceDB while the accelerator's record of
the store is current, gets the same answers as through LanceDB, and never uses a stale record."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from egorag.config import RetrievalConfig
from egorag.schema import EncoderFingerprint, Scene, Video, VideoInfo, scene_id
from index.faiss import FaissAccelerator
from index.lance import LanceSceneStore
from index.mapped import MappedStore, open_for_query
from retrieval.hierarchical import HierarchicalRetriever
from retrieval.video_prior import VideoPrior

DIMS = {"text": 16, "visual": 12}
ROOT = Path(__file__).resolve().parents[1]


def unit(rng, dim):
    v = rng.standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def add_video(store, vid, n, rng, globals_=True):
    scenes = [
        Scene(scene_id(vid, i), vid, f"/data/{vid}.mp4", i, float(i), float(i + 1), transcript=f"scene {i} of {vid} lighthouse" if i % 4 == 0 else "",
              vectors={m: unit(rng, d) for m, d in DIMS.items() if m == "text" or i % 3})
        for i in range(n)
    ]
    vectors = {m: unit(rng, d) for m, d in DIMS.items()} if globals_ else {}
    store.add_video(Video(vid, f"/data/{vid}.mp4", vid, VideoInfo(f"/data/{vid}.mp4", n, 25, 8, 8, False, 1), n, vectors), scenes)


@pytest.fixture
def db(tmp_path):
    store = LanceSceneStore(tmp_path / "db", {m: EncoderFingerprint(m, "test", m, d) for m, d in DIMS.items()})
    rng = np.random.default_rng(0)
    for v in range(6):
        add_video(store, f"v{v:02d}", 20, rng, globals_=v != 5)  # v05: no global vectors
    store.build_text_index()
    FaissAccelerator(store).sync()  # writes the accelerator's files and the store facts
    return tmp_path / "db"


def test_facts_match_the_store(db):
    real, mapped = LanceSceneStore(db), MappedStore.open(db)
    assert mapped is not None and mapped.current
    assert mapped.fingerprints == real.fingerprints and mapped.modalities == real.modalities
    assert mapped.version == real.version and mapped.has_keyframes() == real.has_keyframes()
    assert mapped.video_stamps() == real.video_stamps() and mapped.complete_ids() == real.complete_ids()
    for m in DIMS:
        ids, vectors = mapped.video_vectors(m)
        want_ids, want = real.video_vectors(m)
        assert sorted(ids) == sorted(want_ids) and "v05" not in ids
        order = [want_ids.index(v) for v in ids]
        np.testing.assert_array_equal(vectors, want[order])
    all_ids, matrices = mapped.video_matrices()  # one row per complete video, views of the file
    assert all_ids == sorted(real.complete_ids())
    for m in DIMS:
        full, present = matrices[m]
        ids, vectors = mapped.video_vectors(m)
        assert not full.flags.owndata and list(np.asarray(all_ids)[present]) == ids
        np.testing.assert_array_equal(full[present], vectors)
        assert not full[~present].any()  # v05's row
    assert mapped._real is None  # all of it answered without LanceDB


QUERY = """
import json, sys
import numpy as np
from egorag.config import RetrievalConfig
from index.faiss import FaissAccelerator
from index.mapped import open_for_query
from retrieval.hierarchical import HierarchicalRetriever
store = open_for_query(sys.argv[1])
q = json.loads(sys.argv[2])
retriever = HierarchicalRetriever(store, {}, RetrievalConfig(), backend=FaissAccelerator(store))
hits = retriever.search_vectors({m: np.asarray(v, np.float32) for m, v in q.items()}, "lighthouse", 5)
print(json.dumps({"store": type(store).__name__, "lancedb": "lancedb" in sys.modules,
                  "hits": [[h.scene_id, h.score] for h in hits]}))
"""


def query_in_fresh_process(db, q):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(QUERY), str(db), json.dumps({m: v.tolist() for m, v in q.items()})],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_fresh_process_answers_without_lancedb_and_as_lancedb_does(db):
    rng = np.random.default_rng(5)
    q = {m: unit(rng, d) for m, d in DIMS.items()}
    got = query_in_fresh_process(db, q)
    assert got["store"] == "MappedStore" and got["lancedb"] is False
    real = LanceSceneStore(db)
    want = HierarchicalRetriever(real, {}, RetrievalConfig(), backend=FaissAccelerator(real)).search_vectors(q, "lighthouse", 5)
    assert [h for h, _ in got["hits"]] == [h.scene_id for h in want]
    np.testing.assert_allclose([s for _, s in got["hits"]], [h.score for h in want], atol=1e-5)


def test_a_write_since_makes_the_record_stale(db):
    mapped = open_for_query(db)
    assert isinstance(mapped, MappedStore)
    acc = FaissAccelerator(mapped)
    acc.sync()
    assert len(acc.catalog.n_rows) == 6 and mapped._real is None
    writer = LanceSceneStore(db)
    add_video(writer, "v99", 7, np.random.default_rng(9))  # another process adds a video
    assert not mapped.current and MappedStore.open(db) is None
    acc.sync()  # follows the real store from now on, and records the new facts
    assert "v99" in acc.catalog.n_rows and mapped.version == writer.version
    assert "v99" in mapped.complete_ids()
    fresh = MappedStore.open(db)
    assert fresh is not None and "v99" in fresh.video_stamps() and fresh.version == writer.version


def test_the_video_level_is_kept_for_the_next_process_until_the_store_changes(db, monkeypatch):
    """A fresh process's first query maps the videos' vectors and reads the video level's
    derived state from the file the last one kept, with the same answers; after a write the
    video level is derived again, from the new videos."""
    from retrieval import fusion

    rng = np.random.default_rng(7)
    q = {m: unit(rng, d) for m, d in DIMS.items()}
    store = open_for_query(db)
    first = HierarchicalRetriever(store, {}, RetrievalConfig(), backend=FaissAccelerator(store))
    want = first.search_vectors(q, "lighthouse", 5)
    assert (db / "faiss" / "kept" / "videos.npz").exists()

    def no_deriving(*a, **k):
        raise AssertionError("derived again")

    store = open_for_query(db)
    with monkeypatch.context() as patch:
        patch.setattr(fusion.Moments, "of", no_deriving)
        patch.setattr(fusion.Moments, "principal_axes", no_deriving)
        again = HierarchicalRetriever(store, {}, RetrievalConfig(), backend=FaissAccelerator(store))
        again.backend.sync()  # the scene calibration moments come from their own file too
        got = again.search_vectors(q, "lighthouse", 5)
        assert not again._video_level().vectors["text"].flags.owndata  # mapped, not copied
    assert [(h.scene_id, h.score, h.prior) for h in got] == [(h.scene_id, h.score, h.prior) for h in want]

    add_video(LanceSceneStore(db), "v99", 7, np.random.default_rng(9))
    store = open_for_query(db)
    after = HierarchicalRetriever(store, {}, RetrievalConfig(), backend=FaissAccelerator(store))
    after.search_vectors(q, "lighthouse", 5)
    level = after._video_level()
    fresh = VideoPrior.of({m: store.video_vectors(m) for m in DIMS}, store.complete_ids())
    assert "v99" in level.position
    np.testing.assert_array_equal(level._moments["text"].cov, fresh._moments["text"].cov)


def test_video_level_kept_for_other_videos_is_derived_again_and_replaced(db):
    """State kept under the right store key but for other videos (a torn write, or a change the
    key cannot see) is not used, and the retriever keeps the right state in its place."""
    store = open_for_query(db)
    acc = FaissAccelerator(store)
    acc.sync()
    rng = np.random.default_rng(3)
    other = VideoPrior.of({m: ([f"x{i}" for i in range(6)], np.stack([unit(rng, d) for _ in range(6)])) for m, d in DIMS.items()})
    acc.keep_derived("videos", other.derived())
    level = HierarchicalRetriever(store, {}, RetrievalConfig(), backend=acc)._video_level()
    assert not level.reused and "x0" not in level.position
    kept = acc.load_derived("videos")
    assert bytes(kept["digest"]) == bytes(level.derived()["digest"])  # replaced
    assert HierarchicalRetriever(store, {}, RetrievalConfig(), backend=acc)._video_level().reused
