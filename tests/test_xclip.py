"""X-CLIP as the visual model (``[visual] model = "xclip"``), with a tiny random model built in the
test: one pooled video vector per scene from its k-means-picked frames, text queries through its
text tower, image queries as still videos, its own fingerprint, and a clear error without weights."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import HashEncoder, ScriptedTranscriber
from PIL import Image

from egorag.config import EngineConfig, TextConfig, VisualConfig
from egorag.engine import Engine
from egorag.errors import IndexMismatchError, ModalityUnavailableError, ModelLoadError
from egorag.models import ModelSet, load_models, probe_models


def test_shapes_normalisation_and_clips(tiny_xclip):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    stills = tiny_xclip.encode_frames(frames)  # each frame as a still video
    assert stills.shape == (5, 16) and np.allclose(np.linalg.norm(stills, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(stills[2], tiny_xclip.encode_clip(np.repeat(frames[2:3], 8, axis=0)), atol=1e-5)
    clip = tiny_xclip.encode_clip(frames)  # five frames, spread over the model's eight
    assert clip.shape == (16,) and abs(np.linalg.norm(clip) - 1) < 1e-5
    assert all(float(clip @ s) < 0.9999 for s in stills)  # the clip is not any one frame
    queries = tiny_xclip.encode_queries(["a dog barking", "rain"])
    assert queries.shape == (2, 16) and not np.allclose(queries[0], queries[1])
    image = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    assert tiny_xclip.encode_images([image]).shape == (1, 16)
    with pytest.raises(ValueError):
        tiny_xclip.encode_clip(frames[:0])


def test_the_engine_stores_one_pooled_vector_per_scene(tmp_path, tiny_xclip, cut_video, tiny_clip):
    cfg = EngineConfig(modalities=("text", "visual"), text=TextConfig(encoder="test-hash"), visual=VisualConfig(model="xclip"))
    models = ModelSet(transcriber=ScriptedTranscriber([]), text=HashEncoder(), visual=tiny_xclip)
    engine = Engine(tmp_path / "db", cfg, models=models)
    engine.index([cut_video])
    fp = engine.store().fingerprints["visual"]
    assert (fp.encoder, fp.checkpoint, fp.dim) == ("xclip", "tiny-xclip", 16)
    [video] = engine.videos()
    scenes = engine.store().scenes_of(video.video_id, with_vectors=True)
    assert len(scenes) == 4
    for scene in scenes:  # one pooled vector: the scene's vector and its one keyframe, at a sampled time
        vec = scene.vectors["visual"]
        assert abs(np.linalg.norm(vec) - 1) < 1e-5 and scene.keyframes.vectors.shape == (1, 16)
        np.testing.assert_allclose(scene.keyframes.vectors[0], vec, atol=1e-6)
        assert scene.start <= scene.keyframes.times[0] < scene.end
    assert len({tuple(np.round(s.vectors["visual"], 4)) for s in scenes}) == 4  # each scene its own clip
    import av

    with av.open(str(cut_video)) as c:
        frame = next(f for f in c.decode(video=0) if f.time >= 4.5).to_image()
    hits = engine.search(image=frame, k=4).hits
    assert hits and "visual" in hits[0].similarities
    assert engine.search("a dog barking", k=2).hits  # the text tower answers text queries
    # a store built with X-CLIP refuses open_clip, and says so
    other = Engine(tmp_path / "db", EngineConfig(modalities=("text", "visual"), text=TextConfig(encoder="test-hash")),
                   models=ModelSet(transcriber=ScriptedTranscriber([]), text=HashEncoder(), visual=tiny_clip))
    with pytest.raises(IndexMismatchError, match="xclip"):
        other.index([cut_video], reindex=True)


def test_without_weights_it_is_off_with_the_fix_and_an_error_when_required(monkeypatch, tmp_path):
    monkeypatch.setenv("EGORAG_MODELS_DIR", str(tmp_path))
    cfg = EngineConfig(visual=VisualConfig(model="xclip"))
    status = probe_models(cfg)["visual"]
    assert not status.enabled and "microsoft/xclip-base-patch16" in status.detail and "To enable" in status.detail
    loaded = load_models(cfg, ("visual",))  # auto: off, with the reason, never random weights
    assert loaded.visual is None and "X-CLIP model 'microsoft/xclip-base-patch16'" in loaded.status["visual"].detail
    from egorag.encoders.xclip import XClipEncoder

    with pytest.raises(ModelLoadError, match="X-CLIP model"):
        XClipEncoder(VisualConfig(model="xclip"))
    required = EngineConfig(modalities=("visual",), visual=VisualConfig(model="xclip", pretrained=str(tmp_path / "missing")))
    with pytest.raises(ModalityUnavailableError, match="X-CLIP model"):
        load_models(required, ("visual",))
