"""Cold start: `egorag --help`, `egorag videos` and `egorag search` in fresh processes, and the
search's time to first result split into imports, model load, store open and the query. The
first-ever search (no ONNX export of the text model cached yet) is timed separately.

    python benchmarks/startup_bench.py --db DEVDB
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

SPLIT = r"""
import json, os, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
t0 = time.perf_counter()
import egorag
from egorag.engine import Engine
from retrieval.hierarchical import HierarchicalRetriever, Query
import faiss, onnxruntime, tokenizers  # what a search needs (text queries in ONNX Runtime; no LanceDB while the store record is current)
t1 = time.perf_counter()
engine = Engine(sys.argv[1])
encoders = engine.query_encoders()
t2 = time.perf_counter()
snapshot = engine.snapshots().current()
t3 = time.perf_counter()
hits = engine.search("how does lava burst out of a mountain", k=5).hits
t4 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "model_load_s": t2 - t1, "store_open_s": t3 - t2, "first_query_s": t4 - t3,
                  "total_s": t4 - t0, "torch_imported": "torch" in sys.modules, "lancedb_imported": "lancedb" in sys.modules,
                  "snapshot": snapshot.generation}))
"""


def wall(cmd: list[str], runs: int = 3, **env: str) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=dict(os.environ, HF_HUB_OFFLINE="1", **env))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "egorag.cli"]
    search = cli + ["search", "lava from a mountain", "--db", args.db, "-q"]
    figures = {
        # once per machine: no ONNX export cached yet, so this one loads PyTorch and exports
        "search_cli_first_ever_s": wall(search, runs=1, EGORAG_CACHE_DIR=tempfile.mkdtemp(prefix="egorag-cache-")),
        "help_s": wall(cli + ["--help"]),
        "videos_s": wall(cli + ["videos", "--db", args.db]),
        "search_cli_s": (wall(search, runs=1), wall(search, runs=3))[1],  # the first run caches the export
    }
    out = subprocess.run([sys.executable, "-c", SPLIT, args.db], check=True, capture_output=True, text=True)
    figures["search_split"] = json.loads(out.stdout.strip().splitlines()[-1])
    for k, v in figures.items():
        print(f"{k:14s} {v}")
    save("startup_bench", figures)


if __name__ == "__main__":
    main()
