"""Serving benchmark: `egorag serve` answering concurrent clients, against the library called in
process, on a store of real MiniLM text embeddings.

    python benchmarks/server_bench.py --scenes 100000 [--queries 200] [--keep DIR] [--baseline REF]

The store: ``--scenes`` scenes whose text vectors are real all-MiniLM-L6-v2 embeddings of real
sentences (search_bench.py's cached corpus; beyond it, synthetic ones with its spectrum) and
whose transcripts are those sentences, stamped with the real MiniLM encoder's fingerprint, so
that `egorag serve` answers it end to end: query text -> MiniLM (ONNX Runtime) -> fused text +
BM25 + video prior search -> JSON. Queries: held-out real sentences.

Side by side in one run, the same queries:
- the library in process: ``Engine.search`` one query at a time, and ``Engine.search_many``;
- servers, each its own process: ``--max-batch 1`` (every query alone) and the default 32
  (queries that wait together are answered in one batch), and with ``--baseline REF`` the server
  of that git revision (checked out into a temporary worktree) at the default batch, each at 1, 8
  and 32 concurrent clients (threads with keep-alive connections), alternating round by round.
Figures: queries per second, client-side p50/p99 latency, the servers' hits against the
library's for every query.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402
from search_bench import Spectrum, build_store, minilm_corpus, pct  # noqa: E402

import egorag  # noqa: E402
from egorag.schema import EncoderFingerprint  # noqa: E402

CLIENTS = (1, 8, 32)
ROUNDS = 2  # per server and client count, alternating between the servers


#: the store's text vectors are MiniLM's (search_bench's cached corpus): the servers use MiniLM too
CONFIG = '[text]\nmodel = "all-MiniLM-L6-v2"\n'


def text_fingerprint() -> EncoderFingerprint:
    """The fingerprint MiniLM writes (so the served engine accepts the store)."""
    from egorag.config import EngineConfig, TextConfig
    from egorag.models import load_models

    encoder = load_models(EngineConfig(text=TextConfig(model="all-MiniLM-L6-v2")), ("text",)).text
    return EncoderFingerprint("text", encoder.name, encoder.checkpoint, int(encoder.dim))


def start_server(db: Path, max_batch: int, source: Path | None = None) -> tuple[subprocess.Popen, str, float]:
    """A server process (egorag imported from ``source``, a checkout, when given), its URL, and
    the seconds from its launch to listening (the interpreter, imports, the query encoder and
    the store opened)."""
    log = tempfile.TemporaryFile("w+")  # not a pipe: nobody reads it while the server runs
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)  # ahead of the editable install of this checkout
    t0 = time.perf_counter()
    config = db.parent / "minilm.toml"
    config.write_text(CONFIG)
    proc = subprocess.Popen([sys.executable, "-m", "egorag.cli", "serve", "--db", str(db), "--config", str(config), "--port", "0",
                             "--max-batch", str(max_batch)],
                            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=source)
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        proc.wait()
        log.seek(0)
        raise RuntimeError(f"server did not start: {line}{log.read()}")
    return proc, line.split(" on ")[1].split()[0], time.perf_counter() - t0


def client_round(url: str, texts: list[str], clients: int) -> tuple[float, list[float], dict[str, list[str]]]:
    """Every text searched once over ``clients`` keep-alive connections in parallel: wall
    seconds, each request's latency (ms), and each text's hit scene ids."""
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    latencies: list[float] = []
    hits: dict[str, list[str]] = {}
    lock = threading.Lock()
    todo = iter(texts)

    def run() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        while True:
            with lock:
                text = next(todo, None)
            if text is None:
                break
            t0 = time.perf_counter()
            conn.request("GET", "/search?" + urllib.parse.urlencode({"q": text, "k": 10}))
            response = conn.getresponse()
            body = json.loads(response.read())
            ms = (time.perf_counter() - t0) * 1000
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {body}")
            with lock:
                latencies.append(ms)
                hits[text] = [h["scene_id"] for h in body["hits"]]
        conn.close()

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="at most 200 (the cached corpus's held-out sentences)")
    parser.add_argument("--keep", help="build the store here and keep it (reused when already there)")
    parser.add_argument("--baseline", help="also serve with the egorag of this git revision (e.g. the commit before a change)")
    args = parser.parse_args()

    sentences, real = minilm_corpus(120_200)  # search_bench.py's cache: 120k sentences + 200 held out
    texts = sentences[120_000 : 120_000 + min(args.queries, 200)]
    root = Path(args.keep or tempfile.mkdtemp(prefix="egorag-serve-")) / "db"
    figures: dict = {"scenes": args.scenes, "queries": len(texts), "cpus": os.cpu_count()}
    if not (root / "scenes.lance").exists():
        t0 = time.perf_counter()
        build_store(root, args.scenes, real[:120_000], sentences[:120_000], Spectrum(real[:120_000]), {"text": text_fingerprint()})
        egorag.Engine(root).snapshots().current(0)  # the search snapshot
        figures["build_s"] = time.perf_counter() - t0
    os.sync()

    engine = egorag.Engine(root)
    engine.search_many(texts[:32], k=10)  # load the encoder, open the store, warm the caches
    library: dict[str, list[str]] = {}
    lat = []
    for text in texts:
        t0 = time.perf_counter()
        library[text] = [h.scene_id for h in engine.search(text, k=10).hits]
        lat.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    batched = [r for i in range(0, len(texts), 32) for r in engine.search_many(texts[i : i + 32], k=10)]
    batched_s = time.perf_counter() - t0
    figures["library"] = {"one_at_a_time": pct(lat),
                          "search_many_32": {"qps": len(texts) / batched_s,
                                             "same_hits": sum([h.scene_id for h in r.hits] == library[t] for r, t in zip(batched, texts)) / len(texts)}}
    print("library", json.dumps(figures["library"]), flush=True)
    del engine

    worktree = None
    if args.baseline:
        worktree = Path(tempfile.mkdtemp(prefix="egorag-baseline-")) / "src"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.baseline], check=True, capture_output=True)
        figures["baseline"] = subprocess.run(["git", "rev-parse", "--short", args.baseline], capture_output=True, text=True).stdout.strip()
    plan = {"batch_1": (1, None), "batch_32": (32, None)}
    if worktree is not None:
        plan[f"baseline_{figures['baseline']}_batch_32"] = (32, worktree)
    servers = {}
    try:
        for name, (batch, source) in plan.items():
            proc, url, figures[f"server_start_s_{name}"] = start_server(root, batch, source)
            servers[name] = proc, url
        print("server start-up", {n: round(figures[f"server_start_s_{n}"], 2) for n in servers}, "s", flush=True)
        for name, (_, url) in servers.items():
            client_round(url, texts[:32], 4)  # warm
        figures["served"] = {}
        for clients in CLIENTS:
            runs: dict[str, dict] = {name: {"wall": 0.0, "lat": [], "same": 0} for name in servers}
            for _ in range(ROUNDS):
                for name, (_, url) in servers.items():
                    wall, latencies, hits = client_round(url, texts, clients)
                    runs[name]["wall"] += wall
                    runs[name]["lat"] += latencies
                    runs[name]["same"] += sum(hits[t] == library[t] for t in texts)
            for name, r in runs.items():
                n = ROUNDS * len(texts)
                out = {**pct(r["lat"]), "qps": n / r["wall"], "same_hits_as_library": r["same"] / n}  # qps: of the wall, not 1 / latency
                figures["served"][f"{name}_clients_{clients}"] = out
                print(f"{name:24s} {clients:2d} clients: {out['qps']:6.1f} QPS, p50 {out['p50_ms']:.1f} ms, "
                      f"p99 {out['p99_ms']:.1f} ms, same hits {out['same_hits_as_library']:.3f}", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
        if worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], capture_output=True)
    save(f"server_bench_{args.scenes}", figures)
    if not args.keep:
        shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
