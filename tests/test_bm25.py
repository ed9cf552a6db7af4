"""BM25 beside the FAISS indexes: tokens, scores, segments, persistence, filters and agreement
with LanceDB's full-text search on the same texts."""

import numpy as np
import pyarrow as pa
import pytest

from egorag.filters import SceneFilter
from egorag.schema import EncoderFingerprint, Scene, Video, VideoInfo, scene_id
from index.build import build_snapshot
from index.files import newest
from index.lance import LanceSceneStore
from index.snapshot import Snapshot
from index.texts import (
    K1,
    Live,
    Postings,
    SceneTexts,
    query_tokens,
    search,
    stems,
    tokenize,
)

WORDS = (
    "kitchen knife onion chopping cooking pan garden flowers watering running runner dog leash park "
    "bicycle repair wheel tyre station train ticket beach waves surfing mountain hiking trail snow "
    "camera battery charging laptop keyboard meeting coffee espresso guitar song singing painting"
).split()


def sentences(n, seed=0):
    """Deterministic texts with a skewed word distribution and a few stop words."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    out = []
    for _ in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(3, 12)), p=p)) + ["the", "and"]
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


def test_tokens_are_folded_split_stemmed_and_stop_stems_dropped():
    docs, tokens = tokenize(pa.array(["The CAFÉ's crème-brûlée, and running!", None, "x" * 41 + " ok_go 3D"]))
    assert tokens.to_pylist() == ["the", "cafe", "s", "creme", "brulee", "and", "running", "ok", "go", "3d"]
    assert docs.tolist() == [0] * 7 + [2] * 3
    # stop words are matched on stems, as LanceDB does: "doing" (stem "do") goes, "before" ("befor") stays
    assert stems(["the", "doing", "before", "only", "myself", "running"]) == [None, None, "befor", "onli", None, "run"]
    postings = Postings.build(pa.array(["runs running runner", "ran", "the and of"]))
    # "runs" and "running" share the stem "run"; "runner" and "ran" do not
    assert len(postings.hashes) == 3 and postings.lengths.tolist() == [3, 1, 0]


def test_query_tokens_match_the_indexing_tokens():
    texts = ["Naïve façade — São Paulo's 2nd café_au_lait!", "ÉCOLE   élève\tcoöperate x²", "", "don't stop-believing 1,000.5",
             "Ω-3 Straße ﬁne ℃ ½", "a" * 45 + " b" * 3] + sentences(50, seed=3)
    for i, text in enumerate(texts):
        docs, tokens = tokenize(pa.array([text]))
        assert query_tokens(text) == tokens.to_pylist(), text


def test_scores_are_bm25():
    texts = ["apple banana", "apple apple cherry cherry cherry", "banana"]
    p = Postings.build(pa.array(texts))
    got = dict(search([(0, p)], "apple", 10, np.ones(3, bool), everyone([(0, p)], 3)))
    n, df, avgdl = 3, 2, (2 + 5 + 1) / 3
    idf = np.log1p((n - df + 0.5) / (df + 0.5))
    for row, tf, dl in ((0, 1, 2), (1, 2, 5)):
        want = idf * tf * (K1 + 1) / (tf + K1 * (1 - 0.75 + 0.75 * dl / avgdl))
        assert got[row] == pytest.approx(want)
    assert 2 not in got
    assert search([(0, p)], "the and", 10, np.ones(3, bool), everyone([(0, p)], 3)) == []  # stop words only


def everyone(segments, n):
    return Live.of(segments, np.ones(n, bool))


def test_deleted_rows_do_not_count():
    """A store's scores depend on its content only: the same texts score the same whether or not
    deleted (or re-indexed) rows sit beside them."""
    texts = sentences(120, seed=5)
    clean = Postings.build(pa.array(texts))
    history = Postings.build(pa.array(texts[:40] + sentences(30, seed=9) + texts[40:]))  # 30 rows deleted since
    alive = np.ones(150, bool)
    alive[40:70] = False
    for query in ("onion chopping", "espresso guitar", "running dog in the park"):
        want = search([(0, clean)], query, 15, np.ones(120, bool), everyone([(0, clean)], 120))
        got = search([(0, history)], query, 15, alive, Live.of([(0, history)], alive))
        assert want
        assert [r if r < 40 else r - 30 for r, _ in got] == [r for r, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-6)


def test_segments_and_merge_give_the_same_ranking():
    texts = sentences(300)
    whole = Postings.build(pa.array(texts))
    parts = [Postings.build(pa.array(texts[a:b])) for a, b in ((0, 100), (100, 220), (220, 300))]
    merged = Postings.merge(parts)
    allowed = np.ones(300, bool)
    for query in ("onion chopping", "running dog in the park", "espresso"):
        want = search([(0, whole)], query, 20, allowed, everyone([(0, whole)], 300))
        assert want
        for segments in ([(0, merged)], [(0, parts[0]), (100, parts[1]), (220, parts[2])]):
            got = search(segments, query, 20, allowed, everyone(segments, 300))
            assert [r for r, _ in got] == [r for r, _ in want]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want])


def test_merged_and_dense_accumulation_give_the_same_scores(monkeypatch):
    """Rare terms' rows are merged from the sorted lists, common terms' summed in a dense array:
    the same rows and the same float64 sums either way."""
    import index.texts as bm25

    texts = sentences(400, seed=3)
    segments = [(0, Postings.build(pa.array(texts[:250]))), (250, Postings.build(pa.array(texts[250:])))]
    allowed = np.ones(400, bool)
    allowed[::7] = False
    for query in ("kitchen knife onion", "espresso guitar painting song", "the dog and the dog", "running runner"):
        monkeypatch.setattr(bm25, "DENSE_FRACTION", 10**9)  # always dense
        dense = search(segments, query, 50, allowed, everyone(segments, 400))
        monkeypatch.setattr(bm25, "DENSE_FRACTION", 1)  # merged unless every row is touched
        merged = search(segments, query, 50, allowed, everyone(segments, 400))
        assert dense and merged == dense


def test_scene_texts_persist_and_merge(tmp_path, monkeypatch):
    import index.texts as texts_mod

    monkeypatch.setattr(texts_mod, "MAX_SEGMENTS", 3)
    texts = sentences(200, seed=1)
    st = SceneTexts(tmp_path)
    for a in range(0, 200, 40):  # 5 segments: merged into one past 3
        st.append(a, pa.table({"transcript": texts[a : a + 40], "caption": [""] * len(texts[a : a + 40])}))
    assert st.starts == [0, 160] and sorted(p.name for p in tmp_path.glob("bm25-*")) == ["bm25-0.arrow", "bm25-160.arrow"]
    want = st.search("guitar song", 10, np.ones(200, bool), np.ones(200, bool))
    rows = np.random.default_rng(0).permutation(200)[:100]  # across segments, in no order
    assert st.get(rows[:5]) == st.get(rows)[:5] == [(texts[r], "", "") for r in rows[:5]]  # scalar reads = takes
    assert st.get(rows) == [(texts[r], "", "") for r in rows]
    reopened = SceneTexts.open(tmp_path, 200)
    assert reopened.search("guitar song", 10, np.ones(200, bool), np.ones(200, bool)) == want
    with pytest.raises(ValueError, match="cover 200 rows, not 240"):
        SceneTexts.open(tmp_path, 240)


def fill_texts(store, texts, videos=4, dim=8):
    per = len(texts) // videos
    rng = np.random.default_rng(0)
    for v in range(videos):
        vid = f"v{v:03d}"
        scenes = [
            Scene(scene_id(vid, i), vid, f"/data/{vid}.mp4", i, float(i), float(i + 1),
                  transcript=texts[v * per + i], caption="" if i % 3 else "a caption about snow",
                  vectors={"text": (lambda x: x / np.linalg.norm(x))(rng.standard_normal(dim)).astype(np.float32)})
            for i in range(per)
        ]
        store.add_video(Video(vid, f"/data/{vid}.mp4", vid, VideoInfo(f"/data/{vid}.mp4", per, 25, 8, 8, False, 1), per, {}), scenes)


@pytest.fixture
def text_store(tmp_path):
    store = LanceSceneStore(tmp_path / "db", {"text": EncoderFingerprint("text", "test-hash", "h", 8)})
    fill_texts(store, sentences(400, seed=2))
    store.build_indexes(full_text=True)
    return store


def snapshot(store) -> Snapshot:
    build_snapshot(store)
    return Snapshot.open(newest(store.uri)[1])


def test_snapshot_bm25_agrees_with_lancedb_fts(text_store):
    acc = snapshot(text_store)
    overlap = []
    for query in ("onion knife", "snow mountain hiking", "charging the camera battery", "surfing waves", "coffee meeting"):
        lance = [acc.catalog.row_of(s) for s, _ in text_store.text_search(query, 10)]
        ours = [r for r, _ in acc.text_search(query, 10)]
        assert ours and lance
        overlap.append(len(set(lance) & set(ours)) / 10)
    assert np.mean(overlap) >= 0.8


def test_snapshot_bm25_filters_and_never_returns_deleted_rows(text_store):
    acc = snapshot(text_store)
    first = acc.text_search("guitar", 5)
    video = acc.catalog.meta([first[0][0]])[0].video_id
    only = acc.text_search("guitar", 50, SceneFilter(video_ids=(video,)))
    assert only and {m.video_id for m in acc.catalog.meta([r for r, _ in only])} == {video}
    text_store.delete_video(video)
    acc = snapshot(text_store)
    after = acc.text_search("guitar", 100)
    assert after and all(acc.catalog.alive[r] for r, _ in after)
    assert video not in {m.video_id for m in acc.catalog.meta([r for r, _ in after])}
