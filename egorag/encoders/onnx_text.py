"""ONNX Runtime for sentence-transformers query embeddings: the same model, without torch.

A query is one short sentence; in PyTorch its 6-layer MiniLM forward costs ~11 ms on 2 cores,
nearly all of it per-operator dispatch. ONNX Runtime runs the same graph in a few ms, and a
search process that finds an export in the cache never imports torch at all.

The export is made once from the loaded PyTorch model (``torch.onnx.export``, needs the ``onnx``
package), checked against PyTorch on probe sentences, and cached under
``$EGORAG_CACHE_DIR/onnx`` (default ``~/.cache/egorag/onnx``) keyed by the weights' files. Only the
plain layout is supported: a Transformer module, mean pooling, optional Normalize; anything
else stays on PyTorch.

One query is a handful of tokens, so its cost is reading the weights: with ``precision="int8"``
(the default) the matrix weights are stored in 8 bits, in blocks of 32 with their own scale
(ONNX Runtime's ``MatMulNBits``; activations stay float32). all-mpnet-base-v2 went from 17.4 to
10.7 ms a query on 2 cores, MiniLM from 2.4 to 1.4 ms, the query vectors at cosine 0.9995 or
more to PyTorch's on the dev set's queries (0.998 on a bare "ok"; ``benchmarks/RESULTS.md``).
The quantised graph is checked against PyTorch too (:data:`MIN_INT8_COSINE`); one that strays
further, or that cannot be made here, is not used: the float32 graph is cached in its place and
the log says so, with the file to delete to try again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger("egorag")

CACHE_ENV = "EGORAG_CACHE_DIR"
EXPORT_VERSION = 2  # bump when the export changes, so old cache entries are not reused
MAX_ABS_ERROR = 1e-4  # an export whose embeddings differ more from PyTorch's is refused
MIN_INT8_COSINE = 0.995  # int8 weights whose query vectors stray further from PyTorch's are not used
PRECISIONS = ("int8", "float32")
PRECISION_KEY = "egorag_query_precision"  # what a cached graph holds (its ONNX metadata; none: float32)
PROBES = (
    "where did I leave my keys",
    "A dog runs along the beach at sunset while waves break on the sand.",
    "ok",
    " ".join(["long transcript words that run past the model's window"] * 60),
)


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "egorag")
    return Path(root) / "onnx"


def pipeline_config(model_dir: Path) -> dict | None:
    """What the ONNX path must reproduce (max length, lower-casing), or None when the model's
    module layout is not Transformer -> mean Pooling [-> Normalize] with a fast tokenizer."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return None
        pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text())
        modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
        if modes != ["pooling_mode_mean_tokens"] or not (model_dir / "tokenizer.json").exists():
            return None
        st = json.loads((model_dir / "sentence_bert_config.json").read_text())
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return {"max_seq_length": int(st.get("max_seq_length", 512)), "do_lower_case": bool(st.get("do_lower_case", False))}


def cache_key(model_dir: Path) -> str:
    """Changes when any file of the model changes (size or mtime), or the export does."""
    h = hashlib.blake2b(f"{EXPORT_VERSION}:{model_dir.resolve()}".encode(), digest_size=8)
    for f in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(model_dir)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def cached_export(model_dir: Path, precision: str = "int8") -> Path:
    return cache_dir() / f"{model_dir.name}-{cache_key(model_dir)}-{precision}.onnx"


class OnnxSentenceModel:
    """Tokenizer (``tokenizers``) + ONNX Runtime session + mean pooling + L2 normalisation."""

    def __init__(self, onnx_path: Path, model_dir: Path, config: dict, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.config = config
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(config["max_seq_length"])
        self.tokenizer.no_padding()  # tokenizer.json may pad to a fixed length: see embed
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.precision = self.session.get_modelmeta().custom_metadata_map.get(PRECISION_KEY, "float32")
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled embeddings. Texts are run in groups of equal token count, unpadded: on a
        CPU a batch gains little over single runs, and padding a batch to its longest text cost
        2x per query (32 queries of 9 words' median, 43 at most)."""
        if self.config["do_lower_case"]:
            texts = [t.lower() for t in texts]
        encoded = self.tokenizer.encode_batch(list(texts))
        out = np.empty((len(encoded), self.dim), np.float32)
        by_length: dict[int, list[int]] = {}
        for i, e in enumerate(encoded):
            by_length.setdefault(len(e.ids), []).append(i)
        for rows in by_length.values():
            feeds = {name: np.array([getattr(encoded[i], attr) for i in rows], dtype=np.int64)
                     for name, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids"))}
            (hidden,) = self.session.run(None, {name: feeds[name] for name in self.inputs})
            out[rows] = hidden.mean(axis=1)  # no padding: every token counts
        return out


def export(st_model, model_dir: Path, path: Path, torch_embed, precision: str = "int8") -> bool:
    """Export ``st_model``'s transformer to ``path`` (atomically), in ``precision`` when its
    vectors keep to PyTorch's on the probe sentences (float32 otherwise, said in the log). False
    (nothing written) when it cannot be exported here or the float32 graph does not match."""
    import torch

    config = pipeline_config(model_dir)
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError:
        logger.info("text queries stay on PyTorch: the onnx package is not installed (pip install onnx)")
        return False
    transformer = st_model[0].auto_model.eval()
    input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in st_model.tokenizer.model_input_names]

    class Hidden(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(input_names, inputs))).last_hidden_state

    example = st_model.tokenizer(list(PROBES[:2]), return_tensors="pt", padding=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        import warnings

        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Hidden(transformer), tuple(example[n] for n in input_names), str(tmp), input_names=input_names,
                output_names=["hidden"], dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*input_names, "hidden"]},
                opset_version=17, dynamo=False,
            )
        candidate = OnnxSentenceModel(tmp, model_dir, config)
        got, want = candidate.embed(PROBES), torch_embed(list(PROBES))
        error = float(np.abs(_unit(got) - _unit(want)).max())
        if error > MAX_ABS_ERROR:
            logger.warning("ONNX export of %s differs from PyTorch by %.2g; text queries stay on PyTorch", model_dir, error)
            return False
        kept = _quantized(tmp, model_dir, config, want, path) if precision == "int8" else None
        (kept or tmp).replace(path)  # float32 unless marked otherwise
        logger.info("exported %s to ONNX for queries, %s (max difference from PyTorch %.1g): %s", model_dir.name,
                    "int8 weights" if kept else "float32", error, path)
        return True
    except Exception as exc:  # any exporter failure leaves PyTorch in charge, said once
        logger.warning("ONNX export of %s failed (%s: %s); text queries stay on PyTorch", model_dir, type(exc).__name__, exc)
        return False
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".int8.tmp").unlink(missing_ok=True)


def _quantized(fp32: Path, model_dir: Path, config: dict, want: np.ndarray, cached: Path) -> Path | None:
    """``fp32`` with its matrix weights in 8 bits (blocks of 32, symmetric), beside it and marked
    so in its metadata; None (and a warning naming the ``cached`` file to delete to try again)
    when that cannot be made here or its probe vectors stray from ``want``'s."""
    out = fp32.with_suffix(".int8.tmp")
    retry = f"queries run in float32 (delete {cached} to try again)"
    try:
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), bits=8, block_size=32, is_symmetric=True, accuracy_level=4)
        quantizer.process()
        _set_precision(quantizer.model.model, "int8")
        quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
        got = OnnxSentenceModel(out, model_dir, config).embed(PROBES)
    except Exception as exc:  # a quantiser that cannot run here leaves float32 in charge, said once
        logger.warning("int8 query weights for %s could not be made (%s: %s); %s", model_dir.name, type(exc).__name__, exc, retry)
        out.unlink(missing_ok=True)
        return None
    cosine = float((_unit(got) * _unit(want)).sum(axis=1).min())
    if cosine < MIN_INT8_COSINE:
        logger.warning("int8 query weights for %s stray from PyTorch (cosine %.4f < %s); %s", model_dir.name, cosine,
                       MIN_INT8_COSINE, retry)
        out.unlink(missing_ok=True)
        return None
    return out


def _set_precision(model, precision: str) -> None:
    """What a graph holds, in its metadata (read back as ``OnnxSentenceModel.precision``)."""
    del model.metadata_props[:]
    model.metadata_props.add(key=PRECISION_KEY, value=precision)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
