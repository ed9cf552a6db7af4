"""The Qwen2-VL vision tower as the visual modality (a tiny random Qwen2-VL built in conftest):
scene vectors from a clip of frames, image queries, no text queries, "more like this", and one
model shared with the Qwen2-VL captioner, saved and loaded through the real loading code."""

from dataclasses import replace

import numpy as np
import pytest
from conftest import HashEncoder, ScriptedTranscriber
from PIL import Image
from test_engine import SCRIPT

from egorag.captioners.base import _SHARED, release_shared
from egorag.config import CaptionConfig, EngineConfig, TextConfig, VisualConfig
from egorag.encoders.qwen_vision import QwenVisionEncoder
from egorag.engine import Engine
from egorag.errors import ModalityUnavailableError, NotFoundError
from egorag.models import ModelSet, load_models, probe_models


@pytest.fixture(scope="module")
def tower(tiny_qwen):
    return QwenVisionEncoder.from_model(tiny_qwen._model, tiny_qwen._processor.video_processor, "tiny-qwen")


def frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, 336, 336, 3), dtype=np.uint8)


def test_a_clip_is_one_unit_vector_the_towers_first_token(tower, tiny_qwen):
    a = tower.encode_clip(frames(4))
    assert a.shape == (tower.dim,) == (32,) and np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(a, tower.encode_clip(frames(4)))  # deterministic
    assert not np.allclose(a, tower.encode_clip(frames(4, seed=1)))
    assert tower.encode_clip(frames(3)).shape == (32,)  # an odd count: the last frame repeats
    # the first token of the tower's output, not a pooled one
    inputs = tiny_qwen._processor.video_processor(videos=[list(frames(4))], return_tensors="pt",
                                                   size={"longest_edge": 336 * 336, "shortest_edge": 56 * 56})
    tokens = tiny_qwen._model.model.get_video_features(**{k: inputs[k] for k in ("pixel_values_videos", "video_grid_thw")}).pooler_output[0]
    first = tokens[0].detach().numpy()
    assert len(tokens) > 1 and np.allclose(a, first / np.linalg.norm(first), atol=1e-5)
    image = tower.encode_images([Image.fromarray(frames(1)[0])])
    assert image.shape == (1, 32)
    assert tower.text_queries is False
    with pytest.raises(TypeError, match="no text tower"):
        tower.encode_queries(["a dog"])


@pytest.fixture
def qwen_store(tmp_path, cut_video, tower):
    models = ModelSet(transcriber=ScriptedTranscriber(SCRIPT), text=HashEncoder(), visual=tower)
    engine = Engine(tmp_path / "db", EngineConfig(text=TextConfig(encoder="test-hash", model="hash-64")), models=models)
    engine.index([cut_video])
    return engine


def test_text_queries_skip_the_tower_and_image_and_like_queries_use_it(qwen_store, cut_video):
    engine = qwen_store
    assert engine.store().fingerprints["visual"].encoder == "qwen2-vl"
    [video] = engine.videos()
    scenes = engine.store().scenes_of(video.video_id, with_vectors=True)
    assert all(s.vectors["visual"] is not None and s.keyframes.vectors.shape == (1, 32) for s in scenes)
    hits = engine.search("saturn rings planet", k=2).hits
    assert hits[0].scene == 3 and all("visual" not in h.similarities for h in hits)
    image_hits = engine.search(image=Image.fromarray(frames(1)[0]), k=2).hits
    assert image_hits and all("visual" in h.similarities for h in image_hits)
    like = engine.similar(scenes[1].scene_id, k=3).hits
    assert like and all(scenes[1].scene_id not in h.scene_ids for h in like) and all("visual" in h.similarities for h in like)
    with pytest.raises(NotFoundError):
        engine.similar(f"{video.video_id}:00099")
    with pytest.raises(ModalityUnavailableError, match="no text tower"):
        engine.classify_scenes(["indoors", "outdoors"])


def test_the_tower_and_the_captioner_share_one_model_loaded_from_disk(tmp_path, tiny_qwen, cut_video, monkeypatch):
    """Saved with save_pretrained and loaded through the real code: one load for both, freed
    after the caption stage in low-memory mode."""
    import egorag.captioners.qwen as qwen

    tiny_qwen._model.save_pretrained(tmp_path / "qwen")
    tiny_qwen._processor.save_pretrained(tmp_path / "qwen")
    loads = []
    real = qwen.load_qwen2vl
    monkeypatch.setattr(qwen, "load_qwen2vl", lambda *a: loads.append(a) or real(*a))
    cfg = EngineConfig(modalities=("text", "visual", "caption"), text=TextConfig(encoder="test-hash", model="hash-64"),
                       visual=VisualConfig(model="qwen2-vl", pretrained=str(tmp_path / "qwen"), device="cpu"),
                       caption=CaptionConfig(captioner="qwen2-vl", model=str(tmp_path / "qwen"), device="cpu", max_new_tokens=4))
    release_shared()
    try:
        status = probe_models(cfg)["visual"]
        assert status.enabled and "no text tower" in status.detail
        models = load_models(cfg, ("visual", "caption"))
        assert len(loads) == 1 and models.visual._model is models.captioner._model
        assert models.visual.dim == 32
        release_shared()
        low = Engine(tmp_path / "low", replace(cfg, low_memory=True))
        assert len(low.index([cut_video]).indexed) == 1
        assert len(loads) == 2 and not _SHARED  # loaded once for both stages, and freed after them
        [video] = low.videos()
        scenes = low.store().scenes_of(video.video_id, with_vectors=True)
        assert all(s.vectors["visual"] is not None for s in scenes) and any(s.caption for s in scenes)
    finally:
        release_shared()


def test_qwen_without_weights_is_off_in_auto_and_an_error_when_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("EGORAG_MODELS_DIR", str(tmp_path))
    cfg = EngineConfig(visual=VisualConfig(model="qwen2-vl", pretrained=str(tmp_path / "missing")))
    status = probe_models(cfg)["visual"]
    assert not status.enabled and "[visual] pretrained" in status.detail
    with pytest.raises(ModalityUnavailableError, match="visual"):
        load_models(replace(cfg, modalities=("visual",)), ("visual",))


def test_more_like_this_from_the_cli_and_http(qwen_store, capsys):
    """The scene's stored vectors are the query: no encoder is needed to ask for more like it."""
    import json
    from pathlib import Path

    from test_server import request, start

    from egorag.cli import main

    engine = qwen_store
    [video] = engine.videos()
    scene = engine.store().scenes_of(video.video_id)[2].scene_id
    cfg = Path(engine.db).parent / "test.toml"
    cfg.write_text('[text]\nencoder = "test-hash"\nmodel = "hash-64"\n')
    code = main(["search", "--like", scene, "--db", engine.db, "--config", str(cfg), "--k", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["query"] == f"like {scene}" and len(out["hits"]) == 2
    assert all(scene not in h["scene_ids"] for h in out["hits"])
    assert main(["search", "x", "--like", scene, "--db", engine.db]) == 1
    assert "drop the text query" in capsys.readouterr().err
    server = start(Engine(engine.db, replace(engine.config), models=ModelSet(text=HashEncoder())))
    try:
        status, body = request(server, f"/scenes/{scene}/similar?k=2")
        assert status == 200 and [h["scene_id"] for h in body["hits"]] == [h["scene_id"] for h in out["hits"]]
        status, body = request(server, f"/scenes/{video.video_id}:00042/similar")
        assert status == 404 and "no such scene" in body["error"]
    finally:
        server.shutdown()
        server.server_close()
