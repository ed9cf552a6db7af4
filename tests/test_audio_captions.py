"""Audio (tiny CLAP), captioners (tiny BLIP and Qwen2-VL), and the modality loading policy."""

import numpy as np
import pytest
from conftest import HashEncoder, ScriptedTranscriber
from PIL import Image

from egorag.captioners import create_captioner
from egorag.captioners.base import release_shared, shared_model
from egorag.config import (
    AudioConfig,
    CaptionConfig,
    EngineConfig,
    TextConfig,
    VisualConfig,
)
from egorag.encoders.clap import ClapEncoder
from egorag.engine import Engine
from egorag.errors import ConfigError, ModalityUnavailableError, ModelLoadError
from egorag.models import ModelSet, load_models
from egorag.schema import SceneSpan


def test_clap_shapes_and_normalisation(tiny_clap):
    audio = np.random.default_rng(0).standard_normal((2, 48000)).astype(np.float32) * 0.1
    vecs = tiny_clap.encode_audio(list(audio))
    q = tiny_clap.encode_queries(["a dog barking", "rain"])
    for v in (vecs, q):
        assert v.shape == (2, 16) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert not np.allclose(q[0], q[1])


def test_clap_scene_windows(tiny_clap):
    audio = np.random.default_rng(1).standard_normal(48000 * 3).astype(np.float32) * 0.1
    spans = [SceneSpan(0, 0.0, 1.0), SceneSpan(1, 1.0, 3.0), SceneSpan(2, 3.0, 5.0)]
    out = tiny_clap.encode_scenes(audio, spans)
    assert out[0] is not None and out[1] is not None and out[2] is None  # no samples past 3 s
    direct = tiny_clap.encode_audio([audio[48000:144000]])[0]
    assert float(out[1] @ direct) == pytest.approx(1.0, abs=1e-5)


def test_scene_audio_decoded_in_windows_matches_the_whole_track(tiny_clap, cut_video, monkeypatch):
    """Each scene's stretch (at most max_seconds around its centre) comes from the window where it
    starts: the same vectors as cutting it from the whole track, with one window in memory."""
    from egorag.config import AudioConfig
    from egorag.ingest.decode import probe
    from egorag.ingest.pipeline import Segmented, per_scene_audio

    monkeypatch.setattr(tiny_clap, "config", AudioConfig(max_seconds=1.0))
    spans = (SceneSpan(0, 0.0, 1.0), SceneSpan(1, 1.0, 2.48), SceneSpan(2, 2.48, 4.0), SceneSpan(3, 4.0, 6.0))
    segmented = Segmented(probe(cut_video), spans)
    whole = per_scene_audio(cut_video, segmented, tiny_clap, window_s=600.0)
    lengths = []
    real = tiny_clap.encode_scenes
    monkeypatch.setattr(tiny_clap, "encode_scenes", lambda audio, s: lengths.append(len(audio)) or real(audio, s))
    windowed = per_scene_audio(cut_video, segmented, tiny_clap, window_s=1.5)
    assert len(lengths) == 4 and max(lengths) <= 2.5 * 48000  # windows of 1.5 + 1 s
    assert all(v is not None for v in whole)
    for a, b in zip(whole, windowed):
        assert float(a @ b) == pytest.approx(1.0, abs=1e-4)


def test_engine_indexes_audio_and_reports_it(tmp_path, tiny_clap, cut_video, silent_video):
    models = ModelSet(transcriber=ScriptedTranscriber([]), text=HashEncoder(), audio=tiny_clap)
    engine = Engine(tmp_path / "db", EngineConfig(text=TextConfig(encoder="test-hash")), models=models)
    engine.index([cut_video, silent_video])
    store = engine.store()
    assert "audio" in store.fingerprints and store.fingerprints["audio"].dim == 16
    by_path = {v.path.split("/")[-1]: v for v in store.videos()}
    cut_scenes = store.scenes_of(by_path["cuts.mp4"].video_id, with_vectors=True)
    assert all(s.vectors["audio"] is not None for s in cut_scenes)
    assert all(s.vectors["audio"] is None for s in store.scenes_of(by_path["silent.mp4"].video_id, with_vectors=True))
    assert by_path["silent.mp4"].global_vectors["audio"] is None
    hit = engine.search("a dog barking", k=1).hits[0]
    assert "audio" in hit.similarities and hit.video.endswith("cuts.mp4")


def frames(n=3):
    return [Image.fromarray(np.random.default_rng(i).integers(0, 255, (96, 128, 3), dtype=np.uint8)) for i in range(n)]


def test_blip_captions_deterministically(tiny_blip):
    a, b = tiny_blip.caption(frames()), tiny_blip.caption(frames())
    assert isinstance(a, str) and a and a == b
    assert tiny_blip.caption([]) == ""


def test_blip_captions_every_frame_in_one_batch_and_joins_the_distinct_ones(tiny_blip):
    from egorag.captioners.blip import join_captions

    shots = frames(3)
    alone = [tiny_blip.caption([f]) for f in shots]  # one frame: its own caption
    assert tiny_blip.caption(shots) == join_captions(alone)  # batched: the same captions, joined
    assert join_captions(["a man in a kitchen", "a man standing in a kitchen.", "a dog on a sofa", "a  dog on a sofa"]) == \
        "a man standing in a kitchen; a dog on a sofa"
    assert join_captions(["", "  "]) == ""


def test_caption_frames_follow_the_keyframes():
    import av

    from egorag.ingest.frames import CaptionFrames
    from egorag.schema import SceneSpan

    collector = CaptionFrames(size=32, period=1.0, per_scene=3)
    for t in range(10):  # one frame a second, each a different grey
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * t, np.uint8), format="rgb24")
        collector.consume(t, float(t), frame)
    spans = [SceneSpan(0, 0.0, 10.0)]
    picked = collector.frames_for(spans, [(2.2, 7.9, 2.4)])[0]  # k-means picks: the frames nearest them, once each
    assert [round(np.asarray(im)[0, 0, 0] / 20) for im in picked] == [2, 8]
    even = collector.frames_for(spans)[0]  # no visual model: evenly spaced
    assert [round(np.asarray(im)[0, 0, 0] / 20) for im in even] == [0, 4, 9]


def test_qwen_captions_from_pil_frames(tiny_qwen):
    msgs = tiny_qwen.messages(frames(2))
    video = msgs[0]["content"][0]
    assert video["type"] == "video" and isinstance(video["video"], list) and isinstance(video["video"][0], Image.Image)
    text = tiny_qwen.caption(frames(3))
    assert isinstance(text, str) and text == tiny_qwen.caption(frames(3))


def test_engine_stores_captions_and_caption_vectors(tmp_path, tiny_blip, cut_video):
    models = ModelSet(transcriber=ScriptedTranscriber([]), text=HashEncoder(), captioner=tiny_blip)
    engine = Engine(tmp_path / "db", EngineConfig(text=TextConfig(encoder="test-hash")), models=models)
    engine.index([cut_video])
    assert set(engine.store().fingerprints) == {"text", "caption"}
    scenes = engine.store().scenes_of(engine.videos()[0].video_id, with_vectors=True)
    assert all(s.caption and s.vectors["caption"] is not None and s.vectors["text"] is not None for s in scenes)
    hit = engine.search(scenes[0].caption, k=1).hits[0]
    assert hit.caption and "caption" in hit.similarities


def test_shared_model_loads_once():
    calls = []
    key = ("test", "x")
    a = shared_model(key, lambda: calls.append(1) or object())
    b = shared_model(key, lambda: calls.append(1) or object())
    assert a is b and calls == [1]
    release_shared(key)
    assert shared_model(key, lambda: calls.append(1) or object()) is not a
    release_shared(key)


@pytest.mark.parametrize("name", ["blip", "qwen2-vl"])
def test_captioner_without_weights_is_an_error(name):
    with pytest.raises(ModelLoadError, match="To enable"):
        create_captioner(CaptionConfig(captioner=name, model="/nonexistent/captioner"))


def test_unknown_captioner():
    with pytest.raises(ConfigError, match="blip"):
        create_captioner(CaptionConfig(captioner="gpt"))


def test_clap_without_weights_is_an_error():
    with pytest.raises(ModelLoadError, match="To enable"):
        ClapEncoder(AudioConfig(model="laion/clap-htsat-unfused"))


def test_auto_mode_reports_disabled_modalities_with_reasons():
    cfg = EngineConfig(text=TextConfig(encoder="test-hash"), visual=VisualConfig(pretrained="no-such-weights"))
    models = load_models(cfg, ("text", "visual", "audio", "caption"))
    assert models.status["text"].enabled and models.visual is None and models.audio is None
    for name in ("visual", "audio", "caption"):
        assert not models.status[name].enabled and "To enable" in models.status[name].detail


def test_explicit_modality_without_weights_raises():
    cfg = EngineConfig(modalities=("text", "visual"), text=TextConfig(encoder="test-hash"), visual=VisualConfig(pretrained="no-such-weights"))
    with pytest.raises(ModalityUnavailableError, match="visual"):
        load_models(cfg, ("text", "visual"))
    with pytest.raises(ConfigError, match="unknown modalities"):
        load_models(EngineConfig(modalities=("smell",)))


def test_a_captioner_without_frames_is_a_bug_not_empty_captions(tiny_blip):
    from egorag.ingest.pipeline import Segmented, caption
    from egorag.schema import SceneSpan, VideoInfo

    info = VideoInfo("v.mp4", 4.0, 25.0, 64, 48, False, 1000)
    spans = (SceneSpan(0, 0.0, 2.0), SceneSpan(1, 2.0, 4.0))
    assert caption(Segmented(info, spans), ModelSet()) == ["", ""]  # no captioner: no captions
    with pytest.raises(RuntimeError, match="caption frames"):
        caption(Segmented(info, spans), ModelSet(captioner=tiny_blip))
    kept = Segmented(info, spans, caption_frames=(frames(1), frames(2)))
    assert all(caption(kept, ModelSet(captioner=tiny_blip)))
