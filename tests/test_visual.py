"""Visual modality with a tiny random open_clip: loading, preprocessing agreement, keyframes,
storage round trip, image queries (MaxSim), zero-shot classification."""

import logging

import av
import numpy as np
import pytest
from conftest import HashEncoder, ScriptedTranscriber
from PIL import Image

from egorag.classify import TEMPLATES, classify, label_embeddings, zero_shot
from egorag.config import EngineConfig, TextConfig, VisualConfig
from egorag.encoders.clip import OpenClipEncoder
from egorag.engine import Engine
from egorag.errors import ModelLoadError
from egorag.ingest.frames import FrameSampler, frame_to_square
from egorag.ingest.keyframes import bipartite_merge, kmeans_keyframes
from egorag.models import ModelSet
from egorag.schema import SceneSpan


def natural_image(h=120, w=200, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) % 64 * 4], -1).astype(np.uint8)
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    img[y : y + h // 3, x : x + w // 3] = rng.integers(0, 255, 3)
    return img


def test_loads_from_local_checkpoint_with_real_weights(tiny_clip, tiny_clip_checkpoint):
    import torch

    state = torch.load(tiny_clip_checkpoint, weights_only=True)
    loaded = tiny_clip._model.state_dict()
    assert all(torch.equal(state[k], loaded[k]) for k in state)  # the file's weights, not random ones
    assert tiny_clip.dim == 16 and tiny_clip.image_size == 32
    assert tiny_clip.checkpoint.endswith("tiny_clip.pt")


@pytest.mark.parametrize("pretrained, message", [("laion2b_s34b_b79k", "Tried: "), ("", "no pretrained weights")])
def test_missing_weights_is_an_error_never_random(tiny_clip_checkpoint, pretrained, message):
    with pytest.raises(ModelLoadError, match=message) as exc:
        OpenClipEncoder(VisualConfig(model="egorag-tiny-clip", pretrained=pretrained, device="cpu"))
    assert "To enable" in str(exc.value)


def test_a_failed_download_is_reported_once_by_egorag_not_as_an_open_clip_error(caplog, monkeypatch):
    """open_clip logs a failed download as an ERROR on the root logger before raising; a default
    run turns the modality off and says why, so that record is kept at debug level."""
    import open_clip.factory

    def unreachable(*args, **kwargs):
        raise OSError("no route to the model hub")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", unreachable)  # a tag open_clip downloads
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # online: egorag lets open_clip try (and fail)
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="egorag"), pytest.raises(ModelLoadError, match="To enable"):
        OpenClipEncoder(VisualConfig(model="ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(r.name == "egorag" and "Failed to download weights" in r.message for r in caplog.records)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_frame_path_matches_open_clip_preprocessing(tiny_clip, seed):
    img = natural_image(seed=seed)
    reference = tiny_clip.encode_images([Image.fromarray(img)])[0]
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")  # as decoded
    ours = tiny_clip.encode_frames(frame_to_square(frame, tiny_clip.image_size)[None])[0]
    assert float(reference @ ours) >= 0.999


def test_encoders_return_unit_rows(tiny_clip):
    frames = np.stack([frame_to_square(av.VideoFrame.from_ndarray(natural_image(seed=s), format="rgb24"), 32) for s in range(3)])
    for out in (tiny_clip.encode_frames(frames), tiny_clip.encode_queries(["a dog", "a car"])):
        assert out.dtype == np.float32 and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert tiny_clip.encode_frames(frames[:0]).shape == (0, 16)


def test_kmeans_picks_one_real_frame_per_known_cluster():
    rng = np.random.default_rng(0)
    centres = np.eye(16, dtype=np.float32)[[0, 5, 9]]
    labels = np.repeat([0, 1, 2], [5, 7, 4])
    vectors = centres[labels] + 0.05 * rng.standard_normal((16, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picks = kmeans_keyframes(vectors, 3)
    assert sorted(labels[picks]) == [0, 1, 2]
    for p in picks:  # each pick is the member nearest its cluster's centroid
        members = np.flatnonzero(labels == labels[p])
        centroid = vectors[members].mean(axis=0)
        assert p == members[np.argmax(vectors[members] @ centroid)]
    assert list(kmeans_keyframes(vectors[:2], 8)) == [0, 1]


def test_bipartite_merge_reduces_to_m_and_keeps_clusters():
    rng = np.random.default_rng(1)
    centres = np.eye(8, dtype=np.float32)[[1, 6]]
    vectors = np.concatenate([centres[0] + 0.01 * rng.standard_normal((6, 8)), centres[1] + 0.01 * rng.standard_normal((6, 8))]).astype(np.float32)
    times = np.arange(12, dtype=float)
    merged, merged_times = bipartite_merge(vectors, times, 2)
    assert merged.shape == (2, 8) and np.allclose(np.linalg.norm(merged, axis=1), 1)
    assert {int(np.argmax(m)) for m in merged} == {1, 6}
    assert merged_times[0] == pytest.approx(2.5) and merged_times[1] == pytest.approx(8.5)


def test_frame_sampler_keyframes_per_scene(tiny_clip, cut_video):
    from egorag.ingest.decode import decode_frames, probe

    sampler = FrameSampler(tiny_clip, VisualConfig(fps=2.0, max_keyframes=2, batch_size=3), min_scene_s=1.0)
    decode_frames(cut_video, probe(cut_video), [sampler])
    spans = [SceneSpan(0, 0.0, 1.0), SceneSpan(1, 1.0, 2.48), SceneSpan(2, 2.48, 4.0), SceneSpan(3, 4.0, 6.0)]
    kfs = sampler.keyframes(spans)
    for kf, span in zip(kfs, spans):
        assert 1 <= len(kf.vectors) <= 2 and all(span.start <= t < span.end for t in kf.times)
        assert all(j[:2] == b"\xff\xd8" for j in kf.jpegs)  # JPEG thumbnails


@pytest.fixture
def visual_engine(tmp_path, tiny_clip):
    models = ModelSet(transcriber=ScriptedTranscriber([]), text=HashEncoder(), visual=tiny_clip)
    cfg = EngineConfig(text=TextConfig(encoder="test-hash"), visual=VisualConfig(fps=2.0))
    return Engine(tmp_path / "db", cfg, models=models)


def frame_at(path, t):
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if f.time >= t:
                return f.to_image()


def test_image_query_finds_the_scene_with_maxsim_and_moment(visual_engine, cut_video):
    visual_engine.index([cut_video])
    scenes = visual_engine.store().scenes_of(visual_engine.videos()[0].video_id, with_vectors=True)
    assert all(s.keyframes is not None and s.vectors["visual"] is not None for s in scenes)
    for t, expected in [(0.5, 0), (3.0, 2), (5.0, 3)]:
        hit = visual_engine.search(image=frame_at(cut_video, t), k=1).hits[0]
        assert hit.scene == expected and hit.similarities["visual"] > 0.99
        assert hit.start <= hit.moment < hit.end


def test_text_query_reports_visual_score(visual_engine, cut_video):
    visual_engine.index([cut_video])
    hit = visual_engine.search("a green frame", k=1).hits[0]
    assert "visual" in hit.similarities


def test_zero_shot_probabilities(tiny_clip):
    labels = ["dog", "car", "rain"]
    lv = label_embeddings(tiny_clip, labels)
    assert lv.shape == (3, 16) and np.allclose(np.linalg.norm(lv, axis=1), 1, atol=1e-5)
    single = tiny_clip.encode_queries([TEMPLATES[0].format("dog")])[0]
    assert float(lv[0] @ single) > 0.5  # the ensemble is built from that label's prompts
    probs = zero_shot(tiny_clip.encode_images([Image.fromarray(natural_image())]), lv, tiny_clip.logit_scale)
    assert probs.shape == (1, 3) and probs.sum() == pytest.approx(1.0)
    # an image vector equal to a label's embedding is classified as that label
    out = classify(["x"], lv[1:2], tiny_clip, labels)
    assert out[0].label == "car" and sum(out[0].probabilities.values()) == pytest.approx(1.0)


def test_engine_classify_images_and_scenes(visual_engine, cut_video, tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(natural_image()).save(path)
    [res] = visual_engine.classify_images([path], ["a dog", "a car"])
    assert res.item == str(path) and sum(res.probabilities.values()) == pytest.approx(1.0)
    visual_engine.index([cut_video])
    scenes = visual_engine.classify_scenes(["a dog", "a car"])
    assert len(scenes) == 4 and all(sum(r.probabilities.values()) == pytest.approx(1.0) for r in scenes)
