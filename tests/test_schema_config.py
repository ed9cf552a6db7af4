import numpy as np
import pyarrow as pa
import pytest

from egorag.config import (
    EngineConfig,
    RetrievalConfig,
    SceneConfig,
    from_dict,
    load_config,
)
from egorag.errors import ConfigError
from egorag.schema import (
    EncoderFingerprint,
    Keyframes,
    Scene,
    decode_fingerprints,
    encode_fingerprints,
    rows_to_table,
    scene_schema,
    video_schema,
)

FPS = {
    "text": EncoderFingerprint("text", "sentence-transformers", "m", 4),
    "visual": EncoderFingerprint("visual", "open-clip", "ViT", 3),
}


def test_scene_schema_has_one_vector_column_per_modality():
    schema = scene_schema(FPS)
    assert schema.field("text_vec").type == pa.list_(pa.float32(), 4)
    assert schema.field("visual_vec").type == pa.list_(pa.float32(), 3)
    assert "audio_vec" not in schema.names and "caption_vec" not in schema.names
    assert schema.field("keyframe_vecs").type == pa.list_(pa.list_(pa.float32(), 3))
    assert decode_fingerprints(schema.metadata[b"egorag.fingerprint"]) == FPS
    assert "text_vec" in video_schema(FPS).names


def test_fingerprint_round_trip_and_inequality():
    assert decode_fingerprints(encode_fingerprints(FPS)) == FPS
    other = dict(FPS, text=EncoderFingerprint("text", "sentence-transformers", "m", 8))
    assert decode_fingerprints(encode_fingerprints(other)) != FPS


def test_scene_rows_round_trip_through_arrow():
    kf = Keyframes(np.eye(3, dtype=np.float32)[:2], (0.5, 1.5), (b"jpg1", b"jpg2"))
    scene = Scene("v:00000", "v", "/x.mp4", 0, 0.0, 2.0, "hello", "", {"text": np.ones(4, np.float32) / 2, "visual": None}, kf)
    table = rows_to_table([scene.to_row()], scene_schema(FPS))
    row = table.to_pylist()[0]
    assert row["text_vec"] == [0.5] * 4
    assert row["visual_vec"] is None
    assert row["keyframe_times"] == [0.5, 1.5]
    assert row["search_text"] == "hello"


def test_load_config_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'modalities = ["asr", "text"]\n[scenes]\nmax_scene_s = 10\n[retrieval]\nfusion = "rrf"\n'
        "[retrieval.weights]\ntext = 2.0\n"
    )
    cfg = load_config(path)
    assert cfg.modalities == ("asr", "text")
    assert cfg.scenes.max_scene_s == 10.0 and isinstance(cfg.scenes.max_scene_s, float)
    assert cfg.retrieval.fusion == "rrf" and cfg.retrieval.weights == {"text": 2.0}


@pytest.mark.parametrize(
    "text, message",
    [
        ("bogus = 1\n", "unknown config key"),
        ("[scenes]\nmax_scene = 3\n", "unknown config key"),
        ('[retrieval]\nfusion = "max"\n', "expected one of"),
        ('[scenes]\nmin_scene_s = "long"\n', "must be float"),
        ("[scenes\n", "invalid TOML"),
    ],
)
def test_bad_config_raises(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_from_dict_defaults_are_frozen_and_independent():
    a, b = from_dict(EngineConfig, {}), EngineConfig()
    assert a == b
    with pytest.raises(Exception):
        a.scenes.min_scene_s = 3  # frozen
    assert RetrievalConfig().weights is not RetrievalConfig().weights
    assert SceneConfig().max_scene_s == 30.0


def test_readme_config_example_is_valid(tmp_path):
    """The README's configuration block must load as written (no unknown keys, right tables)."""
    import re

    from conftest import REPO

    block = re.search(r"```toml\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    path = tmp_path / "readme.toml"
    path.write_text(block)
    cfg = load_config(path)
    assert cfg.modalities == "auto" and cfg.low_memory is False and cfg.on_bad_media == "error"
