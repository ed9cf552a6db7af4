"""Audio event tags (a tiny random AST built here; a scripted tagger end to end) and speaker
diarization (its protocol, with a scripted diarizer): labels on scenes and words, BM25 over the
tags, and the ``--audio-event`` / ``--speaker`` filters through the API, CLI, HTTP and LanceDB."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_engine import config, models
from test_server import request, start

from egorag.audio_events import AudioTagger
from egorag.cli import main
from egorag.config import AudioEventsConfig, DiarizeConfig, EngineConfig, TextConfig
from egorag.diarize import Turn, label_words, scene_speakers
from egorag.engine import Engine
from egorag.errors import ModalityUnavailableError
from egorag.filters import SceneFilter
from egorag.models import ModalityStatus, load_models, probe_models
from egorag.schema import SceneSpan, Word

LABELS = ["Speech", "Dog", "Bark", "Music", "Rain"]


@pytest.fixture(scope="module")
def tiny_ast():
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(0)
    cfg = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, max_length=100,
                    num_mel_bins=16, id2label=dict(enumerate(LABELS)), label2id={x: i for i, x in enumerate(LABELS)})
    extractor = ASTFeatureExtractor(num_mel_bins=16, max_length=100)
    return AudioTagger.from_model(ASTForAudioClassification(cfg), extractor, "tiny-ast", AudioEventsConfig(threshold=0.0, top_k=2))


def test_ast_tags_each_scene_with_its_best_labels(tiny_ast):
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(16000 * 3).astype(np.float32) * 0.1
    spans = [SceneSpan(0, 0.0, 1.0), SceneSpan(1, 1.0, 3.0), SceneSpan(2, 3.0, 5.0)]
    tags = tiny_ast.encode_scenes(audio, spans)
    assert tags[2] is None  # no samples past 3 s
    scores = tiny_ast.scores([audio[16000:48000]])[0]
    assert scores.shape == (5,) and ((scores > 0) & (scores < 1)).all()  # sigmoid: multi-label
    best = [LABELS[i].lower() for i in np.argsort(-scores)[:2]]
    assert list(tags[1]) == best  # top_k = 2, lower-cased, best first
    strict = AudioTagger.from_model(tiny_ast._model, tiny_ast.feature_extractor, "tiny-ast",
                                    AudioEventsConfig(threshold=float(np.sort(scores)[-1]) + 1e-6))
    assert strict.tags(scores) == ()  # nothing reaches the threshold


def test_an_audio_tagger_without_weights_is_off_in_auto_and_an_error_when_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EGORAG_MODELS_DIR", str(tmp_path))
    cfg = EngineConfig(audio_events=AudioEventsConfig(model=str(tmp_path / "no-ast")))
    status = probe_models(cfg)
    assert not status["audio_events"].enabled and "[audio_events] model" in status["audio_events"].detail
    assert not status["diarize"].enabled and "egorag[diarize]" in status["diarize"].detail
    with pytest.raises(ModalityUnavailableError, match="audio_events"):
        load_models(replace(cfg, modalities=("audio_events",)), ("audio_events",))
    with pytest.raises(ModalityUnavailableError, match="diarize.*egorag\\[diarize\\]"):
        load_models(replace(cfg, modalities=("diarize",)), ("diarize",))


def test_words_get_the_speaker_whose_turn_covers_them_and_scenes_their_speakers():
    turns = [Turn(0.0, 2.0, "SPEAKER_00"), Turn(2.0, 5.0, "SPEAKER_01"), Turn(5.5, 6.0, "SPEAKER_00")]
    words = [Word(0.5, 0.8, " hi"), Word(1.8, 2.6, " there"), Word(5.1, 5.3, " gap"), Word(9.0, 9.2, " alone")]
    labelled = label_words(words, turns)
    assert [w.speaker for w in labelled] == ["speaker_00", "speaker_01", "speaker_01", None]  # most overlap; nearest within 1 s
    assert [w.text for w in labelled] == [w.text for w in words]
    spans = [SceneSpan(0, 0.0, 2.2), SceneSpan(1, 2.2, 5.8), SceneSpan(2, 5.8, 6.0), SceneSpan(3, 6.0, 9.0)]
    assert scene_speakers(turns, spans, 0.5) == [("speaker_00",), ("speaker_01",), ("speaker_00",), ()]
    # a scene shorter than twice the minimum lists who talks for half of it
    assert scene_speakers(turns, [SceneSpan(0, 1.9, 2.3)], 0.5) == [("speaker_01",)]
    assert scene_speakers(turns, [SceneSpan(0, 1.5, 2.5)], 0.5) == [("speaker_00", "speaker_01")]


class ScriptedTagger:
    """The pipeline's per-scene audio protocol with fixed tags: ``dog``/``bark`` for scenes that
    start in the first 2.4 s, ``rain`` after. Records the audio it was given."""

    sample_rate = 16000
    reach_s = 10.0
    name, checkpoint = "scripted-tagger", "scripted"

    def __init__(self):
        self.calls = []

    def stretch(self, span):
        return span.start, span.end

    def encode_scenes(self, audio, spans):
        self.calls.append(len(audio))
        return [("dog", "bark") if s.start < 2.4 else ("rain",) for s in spans]


class ScriptedDiarizer:
    """A :class:`egorag.diarize.Diarizer` with fixed turns: one voice, then another from 2.5 s."""

    name, checkpoint = "scripted-diarizer", "scripted"

    def __init__(self):
        self.lengths = []

    def diarize(self, audio):
        self.lengths.append(len(audio))
        return [Turn(0.0, 2.5, "SPEAKER_00"), Turn(2.5, 6.0, "SPEAKER_01")]


@pytest.fixture
def heard(tmp_path, cut_video):
    m = models()
    m.audio_events, m.diarizer = ScriptedTagger(), ScriptedDiarizer()
    engine = Engine(tmp_path / "db", config(), models=m)
    engine.index([cut_video])
    return engine, m


def test_scenes_carry_their_tags_and_speakers_and_words_their_speaker(heard):
    engine, m = heard
    assert m.diarizer.lengths == [pytest.approx(6 * 16000, rel=0.01)]  # the whole track at 16 kHz
    [video] = engine.videos()
    scenes = engine.store().scenes_of(video.video_id)
    assert [s.audio_events for s in scenes] == [("dog", "bark"), ("dog", "bark"), ("rain",), ("rain",)]
    assert [s.speakers for s in scenes] == [("speaker_00",), ("speaker_00",), ("speaker_01",), ("speaker_01",)]
    words = [w for w in scenes[0].moments]
    assert words and all(w.speaker == "speaker_00" for w in words)
    assert all(w.speaker == "speaker_01" for w in scenes[3].moments)
    hit = engine.search("saturn rings planet", k=1).hits[0]  # read from the snapshot's copy
    assert hit.scene == 3 and hit.speakers == ("speaker_01",) and hit.audio_events == ("rain",)


def test_bm25_reads_the_tags_and_the_filters_keep_only_labelled_scenes(heard):
    engine, _ = heard
    top = engine.search("a dog barking", k=1).hits[0]
    assert top.scene in (0, 1) and top.audio_events == ("dog", "bark") and "bm25" in top.scores
    for where, scenes in [(SceneFilter(audio_events=("Rain",)), {2, 3}),
                          (SceneFilter(speakers=("speaker_00",)), {0, 1}),
                          (SceneFilter(audio_events=("dog", "rain"), speakers=("SPEAKER_01",)), {2, 3}),
                          (SceneFilter(audio_events=("bark",), time_from=1.5), {1}),
                          (SceneFilter(speakers=("nobody",)), set())]:
        hits = engine.search("honey bees saturn bread volcano", k=10, where=where).hits
        assert {h.scene for h in hits} == scenes, where
        for h in hits:
            assert where.matches(engine.scene(h.scene_id))
        # LanceDB's own search, the reference, applies the same filter in SQL
        [found] = engine.store().search("text", engine.query_encoders()["text"].encode_queries(["honey bees"])[0], 10, where)
        assert {engine.scene(sid).scene_index for sid, _ in found} == scenes, where


def test_the_filters_from_the_cli_and_the_http_api(heard, capsys):
    engine, _ = heard
    db = Path(engine.db)
    cfg = db.parent / "test.toml"
    cfg.write_text('modalities = ["text"]\n[text]\nencoder = "test-hash"\nmodel = "hash-64"\n')
    code = main(["search", "saturn honey bread volcano", "--db", str(db), "--config", str(cfg), "--audio-event", "DOG", "--json"])
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert code == 0 and {h["scene"] for h in hits} == {0, 1} and all(h["audio_events"] == ["dog", "bark"] for h in hits)
    code = main(["search", "saturn honey", "--db", str(db), "--config", str(cfg), "--speaker", "speaker_01", "--k", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "speakers: speaker_01; sounds: rain" in out
    server = start(Engine(db, config(), models=models()))
    try:
        status, body = request(server, "/search?q=saturn+honey+bread&audio_event=rain&speaker=speaker_01")
        assert status == 200 and {h["scene"] for h in body["hits"]} == {2, 3}
        status, body = request(server, "/search", {"q": "saturn honey bread", "speaker": ["speaker_00"], "audio_event": "bark"})
        assert status == 200 and {h["scene"] for h in body["hits"]} == {0, 1}
        status, body = request(server, "/search", {"q": "saturn", "speaker": 3})
        assert status == 400 and "'speaker'" in body["error"]
        status, body = request(server, f"/scenes/{body_scene(engine, 3)}")
        assert body["speakers"] == ["speaker_01"] and body["moments"][0]["speaker"] == "speaker_01"
    finally:
        server.shutdown()
        server.server_close()


def body_scene(engine, index):
    [video] = engine.videos()
    return engine.store().scenes_of(video.video_id)[index].scene_id


def test_low_memory_mode_tags_and_diarizes_as_normal_mode(tmp_path, cut_video, monkeypatch):
    """In low-memory mode the tagger and the diarizer are loaded for their stage and freed: the
    records are the same as with every model loaded."""
    import egorag.models as models_mod

    loaded = []
    monkeypatch.setitem(models_mod._LOADERS, "audio_events", ("audio_events", lambda c: loaded.append("tagger") or ScriptedTagger()))
    monkeypatch.setitem(models_mod._LOADERS, "diarize", ("diarizer", lambda c: loaded.append("diarizer") or ScriptedDiarizer()))
    real_load = models_mod.load_models

    def load(cfg, components=models_mod.COMPONENTS):  # the scripted ASR; the rest as configured
        out = real_load(cfg, tuple(c for c in components if c != "asr"))
        if "asr" in components:
            out.transcriber, out.status["asr"] = models().transcriber, ModalityStatus("asr", True, "scripted")
        return out

    monkeypatch.setattr(models_mod, "load_models", load)
    cfg = EngineConfig(modalities=("asr", "text", "audio_events", "diarize"), text=TextConfig(encoder="test-hash", model="hash-64"),
                       diarize=DiarizeConfig(min_speech_s=0.5))
    low = Engine(tmp_path / "low", replace(cfg, low_memory=True))
    assert len(low.index([cut_video]).indexed) == 1 and sorted(loaded) == ["diarizer", "tagger"]
    normal = Engine(tmp_path / "normal", cfg)
    normal.index([cut_video])
    [video] = low.videos()
    a, b = (e.store().scenes_of(video.video_id) for e in (low, normal))
    assert [(s.audio_events, s.speakers, s.moments) for s in a] == [(s.audio_events, s.speakers, s.moments) for s in b]
    assert a[0].speakers == ("speaker_00",) and a[2].audio_events == ("rain",)


@pytest.mark.slow
def test_pyannote_diarizes_through_the_protocol(tmp_path):
    """The real pyannote.audio pipeline (extra ``diarize``) with random weights built here: a
    segmentation model, a speaker embedding and a PLDA of random numbers. Checks the wrapper,
    not the quality: turns come back as :class:`Turn` within the track."""
    pytest.importorskip("pyannote.audio", reason="the diarize extra is not installed")
    import torch
    from pyannote.audio.core.plda import PLDA
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet
    from pyannote.audio.pipelines import SpeakerDiarization

    from egorag.diarize import PyannoteDiarizer

    torch.manual_seed(0)
    segmentation = PyanNet(sincnet={"stride": 10})
    segmentation.specifications = Specifications(problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME, duration=5.0,
                                                 classes=["speaker#1", "speaker#2", "speaker#3"], powerset_max_classes=2,
                                                 permutation_invariant=True)
    segmentation.build()
    rng, dim = np.random.default_rng(0), 16
    np.savez(tmp_path / "transform.npz", mean1=rng.standard_normal(256), mean2=rng.standard_normal(dim), lda=rng.standard_normal((256, dim)))
    np.savez(tmp_path / "plda.npz", mu=np.zeros(dim), tr=np.linalg.qr(rng.standard_normal((dim, dim)))[0], psi=np.linspace(2, 0.5, dim))
    pipeline = SpeakerDiarization(segmentation=segmentation, embedding=WeSpeakerResNet34(),
                                  plda=PLDA(tmp_path / "transform.npz", tmp_path / "plda.npz", lda_dimension=dim))
    pipeline.instantiate({"segmentation": {"min_duration_off": 0.0}, "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8}})
    turns = PyannoteDiarizer.from_pipeline(pipeline, "random").diarize(rng.standard_normal(16000 * 6).astype(np.float32) * 0.1)
    assert turns and all(isinstance(t, Turn) and 0 <= t.start < t.end <= 6.01 and t.speaker for t in turns)
    assert PyannoteDiarizer.from_pipeline(pipeline, "random").diarize(np.zeros(0, np.float32)) == []
