"""Shared fixtures: offline environment, test doubles for models, tiny synthetic videos."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"  # before any import that could reach a model hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
if "EGORAG_CACHE_DIR" not in os.environ:  # ONNX exports: one folder per test run, shared with its subprocesses
    os.environ["EGORAG_CACHE_DIR"] = tempfile.mkdtemp(prefix="egorag-test-cache-")
    atexit.register(shutil.rmtree, os.environ["EGORAG_CACHE_DIR"], True)

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from egorag.encoders.base import l2_normalize
from egorag.encoders.registry import register_encoder
from egorag.schema import Word

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "benchmarks" / "data" / "sample.mp4"


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@register_encoder("test-hash")
class HashEncoder:
    """Deterministic bag-of-words encoder: each word hashes (blake2b) to a random unit vector and a
    text is the normalised sum, so texts sharing words are similar. Not a model; a test double."""

    modality = "text"
    text_queries = True

    def __init__(self, model: str = "hash-64", device: str = "cpu", batch_size: int = 64, dim: int = 64, query_runtime: str = "auto",
                 query_precision: str = "int8"):
        self.checkpoint = model
        self.dim = dim

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def encode_documents(self, items: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for i, text in enumerate(items):
            for w in re.findall(r"[a-z0-9]+", text.lower()):
                out[i] += self._word(w)
        return l2_normalize(out)

    encode_queries = encode_documents

    def load_for_documents(self) -> None:
        """Nothing to load."""


class ScriptedTranscriber:
    """Test double for the ASR stage: returns the words it was given (absolute times)."""

    model_name = "scripted"

    def __init__(self, words: list[Word] | None = None):
        self.words = list(words or [])
        self.calls = 0

    def transcribe(self, audio: np.ndarray) -> list[Word]:
        self.calls += 1
        return list(self.words)


def words_at(text: str, start: float, end: float) -> list[Word]:
    """Spread ``text``'s words evenly over [start, end)."""
    tokens = text.split()
    step = (end - start) / len(tokens)
    return [Word(start + i * step, start + (i + 0.8) * step, " " + t) for i, t in enumerate(tokens)]


def make_video(
    path: Path,
    cut_frames: Sequence[int],
    n_frames: int,
    fps: int = 25,
    size: tuple[int, int] = (160, 120),
    audio_seconds: float | None = None,
    seed: int = 0,
    faststart: bool = False,
) -> Path:
    """A synthetic H.264 video whose background colour changes at ``cut_frames`` (known cuts);
    with ``audio_seconds``, an AAC track of tones."""
    import av

    w, h = size
    rng = np.random.default_rng(seed)
    import colorsys

    offset = rng.random()
    colours = [  # hue steps by the golden ratio and brightness alternates: every cut is a real change
        (np.array(colorsys.hsv_to_rgb((offset + i * 0.618) % 1.0, 0.9, 0.95 if i % 2 else 0.45)) * 255).astype(np.uint8)
        for i in range(len(cut_frames) + 1)
    ]
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        a_s = None
        if audio_seconds:
            a_s = c.add_stream("aac", rate=16000, layout="mono")
        seg = 0
        for i in range(n_frames):
            while seg < len(cut_frames) and i >= cut_frames[seg]:
                seg += 1
            img = np.empty((h, w, 3), np.uint8)
            img[:] = colours[seg]
            x = (i * 2) % (w - 20)
            img[h // 3 : h // 3 + 20, x : x + 20] = 255 - colours[seg]
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            c.mux(vs.encode(frame))
        c.mux(vs.encode(None))
        if a_s is not None:
            t = np.arange(int(audio_seconds * 16000)) / 16000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for s in range(0, len(tone), 1024):
                chunk = tone[s : s + 1024].reshape(1, -1)
                af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                af.sample_rate, af.pts = 16000, s
                c.mux(a_s.encode(af))
            c.mux(a_s.encode(None))
    return path


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def cut_video(media_dir) -> Path:
    """6 s at 25 fps with cuts at frames 25, 62, 100 (1.00 s, 2.48 s, 4.00 s) and a tone track."""
    return make_video(media_dir / "cuts.mp4", [25, 62, 100], 150, audio_seconds=6.0)


@pytest.fixture(scope="session")
def library(tmp_path_factory) -> Path:
    """Four short videos with distinct transcripts (tests/writer_proc.py), for the writer tests."""
    from writer_proc import make_library

    return make_library(tmp_path_factory.mktemp("library"))


@pytest.fixture(scope="session")
def clean(library, tmp_path_factory) -> dict:
    """What one writer alone makes of :func:`library`: the state the writer tests compare with."""
    from writer_proc import engine, state

    db = tmp_path_factory.mktemp("clean") / "db"
    engine(str(db)).index([library])
    return state(db)


@pytest.fixture(scope="session")
def silent_video(media_dir) -> Path:
    """3 s, no cut, no audio track."""
    return make_video(media_dir / "silent.mp4", [], 75, seed=1)


@pytest.fixture(scope="session")
def bad_files(media_dir, cut_video) -> dict[str, Path]:
    """One file per kind of bad input."""
    import av

    d = media_dir / "bad"
    d.mkdir()
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    text = d / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    data = cut_video.read_bytes()
    truncated = d / "truncated.mp4"  # moov atom at the end: the header itself is gone
    truncated.write_bytes(data[: len(data) // 3])
    whole = make_video(d / "faststart.mp4", [50], 250, seed=3, faststart=True).read_bytes()
    truncated_tail = d / "truncated_tail.mp4"  # header intact, frames cut off
    truncated_tail.write_bytes(whole[: int(len(whole) * 0.5)])
    audio_only = d / "audio_only.m4a"
    with av.open(str(audio_only), "w") as c:
        s = c.add_stream("aac", rate=16000, layout="mono")
        tone = np.zeros((1, 16000), np.float32)
        af = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
        af.sample_rate, af.pts = 16000, 0
        c.mux(s.encode(af))
        c.mux(s.encode(None))
    return {"missing": d / "does_not_exist.mp4", "empty": empty, "text": text, "truncated": truncated,
            "truncated_tail": truncated_tail, "audio_only": audio_only}


# -- tiny random-weight models, built inside the tests (no weights are downloaded) -------------

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory) -> Path:
    """A tiny open_clip architecture registered from a config dict, and a random checkpoint file."""
    import json

    import open_clip
    import torch

    d = tmp_path_factory.mktemp("clip")
    (d / "egorag-tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(d)
    torch.manual_seed(0)
    model = open_clip.create_model("egorag-tiny-clip", pretrained=None)
    path = d / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_checkpoint):
    """The tiny CLIP loaded through the real loading path (local checkpoint file)."""
    from egorag.config import VisualConfig
    from egorag.encoders.clip import OpenClipEncoder

    return OpenClipEncoder(VisualConfig(model="egorag-tiny-clip", pretrained=str(tiny_clip_checkpoint), device="cpu"))


def word_tokenizer(words: Sequence[str]):
    """A tiny word-level fast tokenizer (transformers) for tiny text towers."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(words)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )


VOCAB = "a dog barking car engine rain bird music speech photo of the video frame showing".split()


@pytest.fixture(scope="session")
def tiny_clap():
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    from egorag.encoders.clap import ClapEncoder

    torch.manual_seed(0)
    config = ClapConfig(
        text_config=dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64),
        audio_config=dict(hidden_size=16, depths=[1, 1], num_attention_heads=[2, 2], patch_embeds_hidden_size=8, enable_fusion=False),
        projection_dim=16,
    )
    fe = ClapFeatureExtractor(truncation="rand_trunc")
    return ClapEncoder.from_model(ClapModel(config), fe, word_tokenizer(VOCAB), checkpoint="tiny-clap")


@pytest.fixture(scope="session")
def tiny_blip():
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    from egorag.captioners.blip import BlipCaptioner

    torch.manual_seed(0)
    config = BlipConfig(
        text_config=dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=64, encoder_hidden_size=16, bos_token_id=0, pad_token_id=1, sep_token_id=2, eos_token_id=2),
        vision_config=dict(hidden_size=16, image_size=32, patch_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
        projection_dim=16,
    )
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=word_tokenizer(VOCAB))
    return BlipCaptioner.from_model(BlipForConditionalGeneration(config), processor, "tiny-blip")


QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_qwen():
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from egorag.captioners.qwen import Qwen2VLCaptioner
    from egorag.config import CaptionConfig

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    words = "user assistant describe what happens in this video scene one sentence a dog car . <unk>".split()
    vocab = {t: i for i, t in enumerate(specials + words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<|endoftext|>", eos_token="<|im_end|>", additional_special_tokens=specials[1:])
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, max_position_embeddings=4096,
                         bos_token_id=None, eos_token_id=vocab["<|im_end|>"], pad_token_id=0),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"],
    )
    torch.manual_seed(0)
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tok, video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_TEMPLATE)
    return Qwen2VLCaptioner.from_model(Qwen2VLForConditionalGeneration(config), processor, "tiny-qwen2-vl", CaptionConfig(captioner="qwen2-vl", max_new_tokens=4))


@pytest.fixture(scope="session")
def tiny_xclip():
    """A tiny random X-CLIP built from an XCLIPConfig (8-frame clips of 32 px), wrapped as egorag's encoder."""
    import torch
    from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel

    from egorag.config import VisualConfig
    from egorag.encoders.xclip import XClipEncoder

    torch.manual_seed(0)
    config = XCLIPConfig(
        text_config=dict(vocab_size=len(VOCAB) + 8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                           patch_size=8, num_frames=8, mit_hidden_size=16, mit_intermediate_size=32, mit_num_hidden_layers=1,
                           mit_num_attention_heads=2),
        projection_dim=16, prompt_layers=1, prompt_num_attention_heads=2,
    )
    processor = VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return XClipEncoder.from_model(XCLIPModel(config), processor, word_tokenizer(VOCAB), "tiny-xclip", VisualConfig(model="xclip"))
