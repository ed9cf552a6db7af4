"""Shared fixtures: offline environment, test doubles for models, tiny synthetic videos."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before any import that could reach a model hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

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

    def __init__(self, model: str = "hash-64", device: str = "cpu", batch_size: int = 64, dim: int = 64):
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
