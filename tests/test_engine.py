"""Engine end to end with test doubles for the models (real decode, scenes, store, retrieval)."""

import shutil

import numpy as np
import pytest
from conftest import HashEncoder, ScriptedTranscriber, make_video, words_at

from egorag.config import EngineConfig, TextConfig
from egorag.engine import Engine
from egorag.errors import EgoragError, IndexMismatchError, MediaError
from egorag.filters import SceneFilter
from egorag.models import ModelSet
from egorag.schema import rows_to_table

SCRIPT = (
    words_at("volcano lava eruption magma", 0.05, 0.95)
    + words_at("bread dough flour oven", 1.1, 2.4)
    + words_at("honey bees hive queen", 2.6, 3.9)
    + words_at("saturn rings planet moons", 4.1, 5.9)
)


def models(dim: int = 64) -> ModelSet:
    return ModelSet(transcriber=ScriptedTranscriber(SCRIPT), text=HashEncoder(dim=dim))


def config() -> EngineConfig:
    return EngineConfig(text=TextConfig(encoder="test-hash", model="hash-64"))


@pytest.fixture
def engine(tmp_path):
    return Engine(tmp_path / "db", config(), models=models())


def test_index_and_search_finds_the_right_scene(engine, cut_video):
    report = engine.index([cut_video])
    assert report.indexed == [str(cut_video.resolve())] and report.scenes == 4 and not report.failed
    [video] = engine.videos()
    assert video.n_scenes == 4 and video.info.has_audio
    result = engine.search("where is the hive of the honey bees", k=3)
    top = result.hits[0]
    assert (top.start, top.end) == (pytest.approx(2.48), pytest.approx(4.0))
    assert "honey bees hive" in top.transcript
    assert top.similarities["text"] > result.hits[1].similarities.get("text", -1)
    d = result.to_dict()
    assert set(d["hits"][0]) >= {"video", "video_id", "scene", "start", "end", "score", "scores", "transcript", "caption"}
    assert d["hits"][0]["video"] == str(cut_video.resolve())
    assert len(engine.search("honey bees", k=np.int64(2)).hits) == 2


@pytest.mark.parametrize("text, k, message", [("   ", 5, "needs a text query or an image"), (None, 5, "needs a text query"),
                                              ("bees", 0, "at least 1"), ("bees", 2.5, "whole number"), ("bees", True, "whole number")])
def test_a_bad_search_is_a_clear_error(engine, cut_video, text, k, message):
    engine.index([cut_video])
    with pytest.raises(EgoragError, match=message):
        engine.search(text, k=k)
    with pytest.raises(EgoragError, match=message):
        engine.search_many(["honey bees", text], k=k)
    # several queries at once (one encoder batch, padded): each one's hits as on its own
    queries = ["where is the hive of the honey bees", "magma", "saturn rings planet", "a loaf of bread"]
    together = engine.search_many(queries, k=3)
    assert [r.query for r in together] == queries
    for query, result in zip(queries, together):
        alone = engine.search(query, k=3).hits
        assert [h.scene_id for h in result.hits] == [h.scene_id for h in alone]
        assert [h.score for h in result.hits] == pytest.approx([h.score for h in alone], abs=1e-5)


def test_rare_word_found_through_bm25(engine, cut_video):
    engine.index([cut_video])
    hit = engine.search("magma", k=1).hits[0]
    assert hit.scene == 0 and "bm25" in hit.similarities


def test_filters_restrict_hits(engine, cut_video):
    engine.index([cut_video])
    hits = engine.search("saturn rings planet", k=5, where=SceneFilter(time_to=4.0)).hits
    assert hits and all(h.start < 4.0 for h in hits)
    with pytest.raises(EgoragError, match="no indexed video has the id 'nope'"):  # not an empty answer
        engine.search("saturn", k=5, where=SceneFilter(video_ids=("nope",)))


def test_reindex_unchanged_is_noop_and_reindex_replaces(engine, cut_video):
    engine.index([cut_video])
    version = engine.store().version
    again = engine.index([cut_video])
    assert again.unchanged == [str(cut_video.resolve())] and not again.indexed
    assert engine.store().version == version  # nothing written
    forced = engine.index([cut_video], reindex=True)
    assert forced.replaced == [str(cut_video.resolve())]
    assert len(engine.videos()) == 1 and engine.store().count_scenes() == 4


def test_changed_file_replaces_old_entry(engine, tmp_path):
    path = make_video(tmp_path / "clip.mp4", [25], 75, seed=5)
    engine.index([path])
    old = engine.videos()[0].video_id
    make_video(path, [40], 100, seed=6)  # same path, new content
    report = engine.index([path])
    assert report.replaced == [str(path.resolve())]
    [video] = engine.videos()
    assert video.video_id != old and engine.store().get_video(old) is None


def test_video_without_audio_indexes_with_empty_transcripts(tmp_path, silent_video):
    ms = models()
    engine = Engine(tmp_path / "db", config(), models=ms)
    report = engine.index([silent_video])
    assert report.scenes == 1 and ms.transcriber.calls == 0
    [scene] = engine.store().scenes_of(engine.videos()[0].video_id, with_vectors=True)
    assert scene.transcript == "" and scene.vectors["text"] is None


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "truncated_tail", "audio_only"])
def test_bad_input_errors_and_keeps_index_intact(engine, cut_video, bad_files, kind):
    engine.index([cut_video])
    with pytest.raises(MediaError) as exc:
        engine.index([bad_files[kind]])
    assert str(bad_files[kind]) in str(exc.value)
    assert [v.path for v in engine.videos()] == [str(cut_video.resolve())]
    assert engine.search("volcano lava", k=1).hits[0].scene == 0


def test_skip_bad_indexes_the_rest(engine, tmp_path, cut_video, bad_files):
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(cut_video, folder / "good.mp4")
    shutil.copy(bad_files["text"], folder / "bad.mp4")
    report = engine.index([folder], on_bad_media="skip")
    assert [p.split("/")[-1] for p in report.indexed] == ["good.mp4"]
    assert len(report.failed) == 1 and report.failed[0][0].endswith("bad.mp4")
    assert "not a readable media file" in report.failed[0][1]


def test_interrupted_run_leaves_nothing_visible_and_resumes(engine, cut_video, monkeypatch):
    store = engine.store(create=True)
    original = type(store).add_video

    def crash_after_scenes(self, video, scenes):
        self._scenes.add(rows_to_table([s.to_row() for s in scenes], self._scenes.schema))
        raise KeyboardInterrupt

    monkeypatch.setattr(type(store), "add_video", crash_after_scenes)
    with pytest.raises(KeyboardInterrupt):
        engine.index([cut_video])
    assert engine.videos() == []
    assert engine.search("honey bees", k=5).hits == []  # orphan scenes are never returned
    monkeypatch.setattr(type(store), "add_video", original)
    report = engine.index([cut_video])
    assert report.indexed and engine.store().count_scenes() == 4


def test_delete_by_path_and_id(engine, cut_video, silent_video):
    engine.index([cut_video, silent_video])
    [deleted] = engine.delete(str(cut_video))
    assert deleted.path == str(cut_video.resolve())
    remaining = engine.videos()
    assert [v.path for v in remaining] == [str(silent_video.resolve())]
    engine.delete(remaining[0].video_id)
    assert engine.videos() == []
    with pytest.raises(EgoragError, match="no such video"):
        engine.delete("nope")


def test_store_built_with_other_encoder_is_refused(tmp_path, cut_video):
    Engine(tmp_path / "db", config(), models=models()).index([cut_video])
    with pytest.raises(IndexMismatchError, match=r'here: \[text\] model = "hash-64".*new --db'):
        Engine(tmp_path / "db", config(), models=models(dim=32)).index([cut_video])
    with pytest.raises(IndexMismatchError, match=r'\[text\] model = "hash-64"\), or index its videos again into a new --db'):
        Engine(tmp_path / "db", config(), models=models(dim=32)).search("lava")


@pytest.mark.slow
def test_low_memory_mode_holds_one_model_at_a_time(tmp_path, cut_video, silent_video, tiny_clip_checkpoint, monkeypatch):
    import gc
    import weakref
    from dataclasses import replace

    import egorag.models as models_mod
    from egorag.config import VisualConfig

    cfg = EngineConfig(
        modalities=("asr", "text", "visual"),
        text=TextConfig(encoder="test-hash", model="hash-64"),
        visual=VisualConfig(model="egorag-tiny-clip", pretrained=str(tiny_clip_checkpoint), device="cpu"),
    )
    alive: list[weakref.ref] = []
    real_load = models_mod.load_models

    def spying_load(config, components=models_mod.COMPONENTS):
        gc.collect()
        if components != ("ocr",):  # the small OCR models join the visual stage: both read the decoded frames
            assert all(ref() is None for ref in alive), "a previous stage's model is still in memory"
        loaded = real_load(config, components)
        for attr in ("transcriber", "text", "visual", "audio", "captioner"):
            if getattr(loaded, attr) is not None:
                alive.append(weakref.ref(getattr(loaded, attr)))
        return loaded

    monkeypatch.setattr(models_mod, "load_models", spying_load)
    low = Engine(tmp_path / "low", replace(cfg, low_memory=True))
    report = low.index([cut_video, silent_video])
    assert len(report.indexed) == 2 and report.scenes == 5 and len(alive) == 3
    assert {s.name for s in report.modalities if s.enabled} == {"asr", "text", "visual"}
    assert set(low.store().fingerprints) == {"text", "visual"}
    monkeypatch.undo()  # normal mode loads every model at once, by design
    normal = Engine(tmp_path / "normal", cfg)
    normal.index([cut_video, silent_video])
    for video in low.videos():
        a = low.store().scenes_of(video.video_id, with_vectors=True)
        b = normal.store().scenes_of(video.video_id, with_vectors=True)
        assert [(s.start, s.end, s.transcript) for s in a] == [(s.start, s.end, s.transcript) for s in b]
        for sa, sb in zip(a, b):
            assert (sa.vectors["visual"] is None) == (sb.vectors["visual"] is None)
            if sa.vectors["visual"] is not None:
                assert float(sa.vectors["visual"] @ sb.vectors["visual"]) > 0.9999
    assert low.index([cut_video]).unchanged  # the skip check works in low-memory mode too


def test_long_lived_engine_sees_another_writers_changes(tmp_path, cut_video, silent_video, monkeypatch):
    """A server's engine keeps its store open; videos indexed or deleted by another process (here
    another Engine on the same folder) show up in its next search and listing."""
    import index.snapshot

    monkeypatch.setattr(index.snapshot, "CHECK_S", 0.0)
    server = Engine(tmp_path / "db", config(), models=models())
    server.index([silent_video])
    assert not [h for h in server.search("honey bees hive", k=3).hits if "hive" in h.transcript]
    writer = Engine(tmp_path / "db", config(), models=models())
    writer.index([cut_video])
    assert "honey bees hive" in server.search("honey bees hive", k=1).hits[0].transcript
    assert len(server.videos()) == 2
    writer.delete(str(cut_video))
    assert all(h.video == str(silent_video.resolve()) for h in server.search("honey bees hive", k=3).hits)
    assert [v.path for v in server.videos()] == [str(silent_video.resolve())]


def test_listing_comes_from_a_current_snapshot_without_lancedb(engine, cut_video, silent_video):
    import json
    import subprocess
    import sys

    from index.lance import LanceSceneStore

    engine.index([cut_video, silent_video])
    code = (
        "import sys, json; from egorag.engine import Engine; v = Engine(sys.argv[1]).videos(); "
        "print(json.dumps({'lancedb': 'lancedb' in sys.modules, 'paths': [x.path for x in v]}))"
    )

    def list_in_a_fresh_process():
        return json.loads(subprocess.run([sys.executable, "-c", code, engine.db], capture_output=True, text=True, check=True).stdout)

    both = sorted(str(p.resolve()) for p in (cut_video, silent_video))
    assert list_in_a_fresh_process() == {"lancedb": False, "paths": both}
    # a write that bypasses the engine makes the snapshot stale: the truth is read, never the snapshot
    LanceSceneStore(engine.db).delete_video(next(v.video_id for v in engine.videos() if v.path == both[0]))
    assert [v.path for v in Engine(engine.db, config(), models=models()).videos()] == both[1:]
    assert list_in_a_fresh_process() == {"lancedb": False, "paths": both[1:]}  # rewritten by that read


def test_engine_reading_a_snapshot_follows_writes_and_writes_itself(tmp_path, cut_video, silent_video, monkeypatch):
    """A fresh engine queries from the search snapshot (LanceDB's store never opened), still
    sees another writer's videos, and can itself index and delete."""
    import index.snapshot

    monkeypatch.setattr(index.snapshot, "CHECK_S", 0.0)
    Engine(tmp_path / "db", config(), models=models()).index([silent_video])
    reader = Engine(tmp_path / "db", config(), models=models())
    assert not [h for h in reader.search("honey bees hive", k=3).hits if "hive" in h.transcript]
    assert reader._store is None
    Engine(tmp_path / "db", config(), models=models()).index([cut_video])
    assert "honey bees hive" in reader.search("honey bees hive", k=1).hits[0].transcript
    reader.delete(str(cut_video))
    assert all(h.video == str(silent_video.resolve()) for h in reader.search("honey bees hive", k=3).hits)
    reader.index([cut_video])
    assert "honey bees hive" in reader.search("honey bees hive", k=1).hits[0].transcript
    assert [v.path for v in reader.videos()] == sorted([str(cut_video.resolve()), str(silent_video.resolve())])


@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
def test_hits_explain_their_score_and_topics_stay_single_scenes(tmp_path, cut_video, fusion):
    """Each hit's ``scores`` are the contributions to its ``score`` (they add up to it), the raw
    values sit in ``similarities``; under either fusion a query on one scene's topic is that
    scene, not a range merged with neighbours about other things."""
    from dataclasses import replace as with_

    from egorag.config import RetrievalConfig

    cfg = with_(config(), retrieval=RetrievalConfig(fusion=fusion))
    engine = Engine(tmp_path / "db", cfg, models=models())
    engine.index([cut_video])
    for query, scene in [("volcano lava eruption", 0), ("bread dough flour oven", 1), ("honey bees hive queen", 2),
                         ("saturn rings planet moons", 3)]:
        hits = engine.search(query, k=4).hits
        assert hits[0].scene == scene and all(len(h.scene_ids) == 1 for h in hits), (fusion, query, [h.scene_ids for h in hits])
        for h in hits:
            assert sum(h.scores.values()) == pytest.approx(h.score, abs=1e-5)
            assert set(h.scores) <= {"text", "bm25", "prior"} and "text" in h.similarities


def test_a_text_hit_starts_where_its_words_were_said(tmp_path, cut_video):
    """A text hit's moment is the spoken word holding most of the query's terms (stemmed), in
    a fresh engine too (the moments are kept beside the search files)."""
    Engine(tmp_path / "db", config(), models=models()).index([cut_video])
    engine = Engine(tmp_path / "db", config(), models=models())
    step = (3.9 - 2.6) / 4  # words_at spreads "honey bees hive queen" over 2.6-3.9 s
    hit = engine.search("where is the hive", k=1).hits[0]
    assert hit.scene == 2 and hit.moment == pytest.approx(2.6 + 2 * step, abs=1e-3)
    assert (hit.moment_text, hit.moment_source) == ("hive", "speech") and hit.to_dict()["moment_source"] == "speech"
    assert engine.search("queens", k=1).hits[0].moment == pytest.approx(2.6 + 3 * step, abs=1e-3)


def test_text_moment_prefers_the_word_or_line_with_most_terms():
    from egorag.schema import Moment
    from retrieval.hierarchical import TextMoments

    moments = [Moment(1.0, "Welcome"), Moment(4.0, "Platform seven"), Moment(9.0, "Train to Lisbon, platform seven"), Moment(12.0, "trains")]
    assert TextMoments("which platform for the Lisbon train")(moments) == moments[2]
    assert TextMoments("training")(moments) == moments[2]  # stems match; the first on a tie
    assert TextMoments("nothing here")(moments) is None and TextMoments("the")(moments) is None
    assert TextMoments("Lisbon")(()) is None


def test_low_memory_mode_with_a_captioner_matches_normal_mode(tmp_path, cut_video, tiny_blip, monkeypatch):
    """The captioner loads after the decode pass in low-memory mode: its frames must be kept."""
    from dataclasses import replace

    import egorag.models as models_mod
    from egorag.config import CaptionConfig

    cfg = EngineConfig(modalities=("asr", "text", "caption"), text=TextConfig(encoder="test-hash", model="hash-64"),
                       caption=CaptionConfig(captioner="blip", model="tiny-blip"))
    real_load = models_mod.load_models

    def load(config, components=models_mod.COMPONENTS):
        if "caption" not in components:
            return real_load(config, components)
        rest = real_load(config, tuple(c for c in components if c != "caption"))
        rest.captioner = tiny_blip  # the tiny random BLIP, built in the test: no weights to load
        rest.status["caption"] = models_mod.ModalityStatus("caption", True, "tiny-blip")
        return rest

    monkeypatch.setattr(models_mod, "load_models", load)
    low = Engine(tmp_path / "low", replace(cfg, low_memory=True))
    assert len(low.index([cut_video]).indexed) == 1
    normal = Engine(tmp_path / "normal", cfg)
    normal.index([cut_video])
    [video] = low.videos()
    a = low.store().scenes_of(video.video_id, with_vectors=True)
    b = normal.store().scenes_of(video.video_id, with_vectors=True)
    assert [s.caption for s in a] == [s.caption for s in b] and all(s.caption for s in a)
    assert set(low.store().fingerprints) == {"text", "caption"}
