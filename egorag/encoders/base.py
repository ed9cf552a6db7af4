"""The encoder protocol shared by every modality.

An encoder declares its ``name``, ``modality`` and ``dim``; ``encode_documents`` embeds indexed
content and ``encode_queries`` embeds query text into the same space. Both return float32 arrays of
shape ``(n, dim)`` whose rows are L2-normalised (an all-zero input row stays zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from egorag.schema import EncoderFingerprint


@runtime_checkable
class Encoder(Protocol):
    name: ClassVar[str]
    modality: ClassVar[str]
    dim: int
    checkpoint: str

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
