"""BM25 query time, this code against an earlier revision's, side by side in one run on the same
postings: what counting only live rows (collection statistics that ignore deleted and re-indexed
rows) costs a query.

    python benchmarks/bm25_bench.py [--rows 1000000] [--queries 300] [--old-rev 5d570bc]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from common import save  # noqa: E402

from index import texts as bm25  # noqa: E402


def old_module(rev: str):
    source = subprocess.run(["git", "show", f"{rev}:index/bm25.py"], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parent).stdout
    path = Path(tempfile.mkdtemp()) / "bm25_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("bm25_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bm25_old"] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def corpus(rows: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Scene-like texts: 20-60 words each from a Zipf-distributed vocabulary of 20,000 words."""
    vocab = np.array([f"w{i}" for i in range(20000)])
    ranks = np.minimum(rng.zipf(1.2, size=rows * 40), len(vocab)) - 1
    lengths = rng.integers(20, 60, rows)
    ends = np.cumsum(lengths)
    words = vocab[ranks[: ends[-1]] if len(ranks) >= ends[-1] else np.resize(ranks, ends[-1])]
    texts = [" ".join(words[e - n : e]) for e, n in zip(ends, lengths)]
    queries = [" ".join(rng.choice(vocab[:3000], rng.integers(3, 8))) for _ in range(300)]
    return texts, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--old-rev", default="5d570bc")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    texts, queries = corpus(args.rows, rng)
    queries = queries[: args.queries]
    t0 = time.perf_counter()
    postings = bm25.Postings.build(pa.array(texts))
    print(f"built postings of {args.rows} rows in {time.perf_counter() - t0:.1f}s", flush=True)
    old = old_module(args.old_rev)
    old_segments = [(0, old.Postings.build(pa.array(texts)))]
    segments = [(0, postings)]
    alive = np.ones(args.rows, bool)
    alive[rng.choice(args.rows, args.rows // 10, replace=False)] = False  # 10 % deleted or re-indexed
    live = bm25.Live.of(segments, alive)
    times = {"old": [], "new": []}
    for q in queries:  # alternating, so that both see the same machine
        t = time.perf_counter()
        old.search(old_segments, q, 10, alive)
        times["old"].append(time.perf_counter() - t)
        t = time.perf_counter()
        bm25.search(segments, q, 10, alive, live)
        times["new"].append(time.perf_counter() - t)
    t = time.perf_counter()
    bm25.Live.of(segments, alive)
    live_s = time.perf_counter() - t
    result = {"rows": args.rows, "queries": len(queries), "old_rev": args.old_rev, "live_stats_ms": round(live_s * 1e3, 2)}
    for name, values in times.items():
        ms = np.array(values) * 1e3
        result[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}
    print(result)
    save(f"bm25_bench_{args.rows}", result)


if __name__ == "__main__":
    main()
