"""Query-encoder latency: one short text query embedded by egorag's query path (ONNX Runtime,
int8 weights by default, and float32) and by sentence-transformers on PyTorch (the peer), side by
side on the same queries, with how far their vectors are from PyTorch's (largest absolute
difference, smallest cosine); for each ``--models`` entry, all in interleaved rounds.

    python benchmarks/encoder_bench.py [--queries 200] [--models all-mpnet-base-v2,all-MiniLM-L6-v2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import HERE, save  # noqa: E402


def queries(n: int) -> list[str]:
    """Short questions built from the dev set's queries (real phrasing, 5-15 words)."""
    import json

    texts = [json.loads(line)["query"] for line in (HERE / "data" / "devset" / "queries_all.jsonl").read_text().splitlines() if line.strip()]
    return [texts[i % len(texts)] for i in range(n)]


def latency(fn, texts: list[str]) -> dict:
    for t in texts[:10]:  # warm-up
        fn([t])
    ms = []
    for t in texts:
        t0 = time.perf_counter()
        fn([t])
        ms.append((time.perf_counter() - t0) * 1000)
    a = np.array(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--models", default="all-mpnet-base-v2,all-MiniLM-L6-v2")
    args = parser.parse_args()
    from egorag.encoders.sentence import SentenceEncoder

    texts = queries(args.queries)
    encoders = {}
    for model in args.models.split(","):
        onnx, onnx32 = SentenceEncoder(model), SentenceEncoder(model, query_precision="float32")
        torch_enc = SentenceEncoder(model, query_runtime="torch")
        assert onnx.query_runtime == onnx32.query_runtime == "onnx", f"no ONNX export of {model} could be made here (see the log)"
        encoders[model] = {"egorag_onnx": onnx, "egorag_onnx_float32": onnx32, "sentence_transformers_torch": torch_enc}
    rounds: dict = {}
    for _ in range(2):  # interleaved rounds: every encoder sees the same machine state
        for model, pair in encoders.items():
            for name, enc in pair.items():
                rounds.setdefault((model, name), []).append(latency(enc.encode_queries, texts))
    figures: dict = {}
    for model, pair in encoders.items():
        f = {name: min(rounds[(model, name)], key=lambda r: r["p50_ms"]) for name in pair}
        b = pair["sentence_transformers_torch"].encode_queries(texts)
        for name in ("egorag_onnx", "egorag_onnx_float32"):
            a = pair[name].encode_queries(texts)
            f[name]["max_abs_difference"] = float(np.abs(a - b).max())
            f[name]["min_cosine"] = float((a * b).sum(axis=1).min())
        f["precision"] = pair["egorag_onnx"]._queries.precision
        f["speedup_p50"] = f["sentence_transformers_torch"]["p50_ms"] / f["egorag_onnx"]["p50_ms"]
        f["dim"] = pair["egorag_onnx"].dim
        figures[pair["egorag_onnx"].checkpoint] = f
        for k, v in f.items():
            print(f"{model:20s} {k:28s} {v}")
    save("encoder_bench", {"queries": len(texts), "figures": figures})


if __name__ == "__main__":
    main()
