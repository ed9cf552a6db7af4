"""The encoder protocol shared by every modality.

An encoder declares its ``name``, ``modality`` and ``dim``; ``encode_documents`` embeds indexed
content and ``encode_queries`` embeds query text into the same space (``text_queries``: whether
it can; a vision tower without a text tower cannot, and text queries skip its modality). Both return float32 arrays of
shape ``(n, dim)`` whose rows are L2-normalised (an all-zero input row stays zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from egorag.schema import EncoderFingerprint, SceneSpan


@runtime_checkable
class Encoder(Protocol):
    name: ClassVar[str]
    modality: ClassVar[str]
    text_queries: ClassVar[bool]
    dim: int
    checkpoint: str

    def load_for_documents(self) -> None:
        """Load what encoding documents needs beyond what queries need (a text encoder whose
        queries run in ONNX loads its PyTorch model here), so that indexing counts model
        loading apart from encoding."""
        ...

    def encode_documents(self, items: Sequence[Any]) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


def fingerprint_of(encoder: Encoder) -> EncoderFingerprint:
    return EncoderFingerprint(
        modality=encoder.modality,
        encoder=encoder.name,
        checkpoint=encoder.checkpoint,
        dim=int(encoder.dim),
    )


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation in float32; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        n = float(np.linalg.norm(x))
        return x / n if n > eps else x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms > eps, x / np.maximum(norms, eps), x).astype(np.float32)


def check_output(encoder: Encoder, vectors: np.ndarray, n: int) -> np.ndarray:
    """Validate an encoder's output shape, so a wrong ``dim`` declaration fails loudly."""
    if vectors.shape != (n, encoder.dim):
        raise ValueError(
            f"encoder {encoder.name!r} returned shape {vectors.shape}, expected ({n}, {encoder.dim})"
        )
    return vectors.astype(np.float32, copy=False)


# -- a scene's audio (the CLAP encoder and the audio event tagger read it alike) ---------------


def centred_stretch(span: SceneSpan, seconds: float) -> tuple[float, float]:
    """At most ``seconds`` of a scene, around its centre."""
    centre, half = 0.5 * (span.start + span.end), 0.5 * seconds
    return max(span.start, centre - half), min(span.end, centre + half)


def per_scene(audio: np.ndarray, spans: Sequence[SceneSpan], sample_rate: int, seconds: float, run, batch: int) -> list:
    """``run(waveforms)``'s result for each scene's :func:`centred_stretch` of ``audio`` (time 0
    at its first sample), ``batch`` scenes a call; None for a scene with under 0.1 s of it."""
    windows, owners = [], []
    for i, span in enumerate(spans):
        a, b = centred_stretch(span, seconds)
        chunk = audio[int(a * sample_rate) : int(b * sample_rate)]
        if chunk.size >= sample_rate // 10:
            windows.append(chunk)
            owners.append(i)
    out: list = [None] * len(spans)
    for start in range(0, len(windows), batch):
        for result, i in zip(run(windows[start : start + batch]), owners[start : start + batch]):
            out[i] = result
    return out
