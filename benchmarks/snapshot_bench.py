"""The query path on stores that look like real ones, this checkout against an earlier commit.

    python benchmarks/snapshot_bench.py --scenes 100000 --baseline e701c10 [--queries 200] [--keep DIR]

Two stores are built (search_bench's data: real MiniLM text vectors and transcripts, all four
modalities with the real embeddings' spectrum): one text-and-vectors only, and one where every
scene also has 4-8 keyframe vectors with their times, as ingest makes them. For each store and
each code (``new``: this checkout's search snapshot; ``old``: the baseline commit's FAISS
accelerator, run from a git worktree on the same LanceDB tables), in fresh processes:

- build: the derived state from the tables (snapshot, or the old search files);
- cold: open to first answer, and whether LanceDB was imported (three runs, median);
- warm p50/p99 of a text query (text, caption, visual and audio vectors, as CLIP and CLAP text
  towers give, plus BM25; MaxSim over keyframes where a store has them) and of an image query
  (the visual vector only);
- recall@10 of the first ``--recall-queries`` text queries against exact fused search over every scene (fusion before the
  MaxSim re-scoring, which both codes apply alike to their best candidates).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from common import save  # noqa: E402
from search_bench import Spectrum, build_store, minilm_corpus  # noqa: E402

from egorag.config import RetrievalConfig  # noqa: E402
from index import files  # noqa: E402
from index.build import build_snapshot  # noqa: E402
from index.lance import LanceSceneStore  # noqa: E402
from index.snapshot import Snapshot  # noqa: E402
from retrieval.hierarchical import HierarchicalRetriever  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
COLD_RUNS = 3

# What a fresh process runs: ``open`` the store's derived state and return a retriever; the
# same measuring code for both, so that only the opening differs.
OPEN = {
    "new": """
from index.snapshot import Snapshots
from retrieval.hierarchical import HierarchicalRetriever
def open_retriever(db, cfg):
    return HierarchicalRetriever(Snapshots(db, build=lambda wait: False).current, {}, cfg)
""",
    "old": """
from index.faiss import FaissAccelerator, FaissOptions
from index.mapped import open_for_query
from retrieval.hierarchical import HierarchicalRetriever
def open_retriever(db, cfg):
    store = open_for_query(db)
    acc = FaissAccelerator(store, FaissOptions(warm=False))
    acc.sync()
    return HierarchicalRetriever(store, {}, cfg, backend=acc)
""",
}

MEASURE = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np, pyarrow as pa
from egorag.config import RetrievalConfig
import retrieval.hierarchical as hierarchical
{open}
db, queries_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
t = pa.ipc.open_file(queries_path).read_all()
def matrix(name):
    c = t.column(name).combine_chunks()
    return c.flatten().to_numpy(zero_copy_only=False).reshape(len(c), -1).astype(np.float32)
texts = t.column("sentence").to_pylist()
text_q = [{{m: matrix(m)[i] for m in ("text", "caption", "visual", "audio")}} for i in range(len(texts))]
image_q = [{{"visual": v}} for v in matrix("image")]
t1 = time.perf_counter()
retriever = open_retriever(db, RetrievalConfig(merge_adjacent=False))
t2 = time.perf_counter()
retriever.search_vectors(text_q[0], texts[0], 10)
t3 = time.perf_counter()
out = {{"imports_s": t1 - t0, "open_s": t2 - t1, "first_answer_s": t3 - t2, "open_to_first_answer_s": t3 - t1}}
if mode == "queries":
    def lat(qs, ts):
        ms, hits = [], []
        for q, s in zip(qs, ts):
            a = time.perf_counter()
            found = retriever.search_vectors(q, s, 10)
            ms.append(1000 * (time.perf_counter() - a))
            hits.append([h.scene_id for h in found])
        return {{"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}}, hits
    out["text"], out["text_hits"] = lat(text_q, texts)
    out["image"], out["image_hits"] = lat(image_q, [None] * len(image_q))
    hierarchical.MAXSIM_REFINE = 0  # candidates and fusion only, for recall against exact fusion
    _, out["text_hits_fused"] = lat(text_q, [None] * len(text_q))
out["lancedb_imported"] = "lancedb" in sys.modules
print(json.dumps(out))
"""


def child(code: str, db: Path, queries: Path, mode: str, pythonpath: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(pythonpath), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", MEASURE.format(open=OPEN[code]), str(db), str(queries), mode],
                         capture_output=True, text=True, env=env, cwd=pythonpath)
    if out.returncode:
        raise RuntimeError(f"{code} {mode}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_old(db: Path, pythonpath: Path) -> float:
    code = ("import sys, time; t = time.perf_counter(); from index.faiss import FaissAccelerator; from index.lance import LanceSceneStore; "
            "FaissAccelerator(LanceSceneStore(sys.argv[1])).sync(); print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(pythonpath)), cwd=pythonpath)
    return float(out.stdout.strip().splitlines()[-1])


def make_queries(store: LanceSceneStore, snap: Snapshot, held_out: np.ndarray, held_text: list[str], spectrum: Spectrum,
                 n: int, path: Path) -> None:
    """Text queries: a held-out real sentence; its nearest scene is the target, the other
    modalities' vectors perturbed copies of the target's (a keyframe's, where it has some).
    Image queries: a perturbed keyframe (or visual vector) of a random scene."""
    rng = np.random.default_rng(0)
    cols = {m: [] for m in ("text", "caption", "visual", "audio", "image")}
    for i in range(n):
        q = held_out[i % len(held_out)]
        target = snap.search_keys("text", q[None], 1)[0][0]
        cols["text"].append(q)
        for m in ("caption", "audio"):
            cols[m].append(spectrum.perturb(snap.vectors(m, [target])[0], noise=1.0))
        kf = snap.keyframes([target]).get(target)
        base = kf.vectors[rng.integers(len(kf.vectors))] if kf is not None else snap.vectors("visual", [target])[0]
        cols["visual"].append(spectrum.perturb(base, noise=1.0))
        other = int(rng.integers(len(snap.catalog)))
        kf = snap.keyframes([other]).get(other)
        cols["image"].append(spectrum.perturb(kf.vectors[0] if kf is not None else snap.vectors("visual", [other])[0], noise=0.6))
    table = pa.table({"sentence": [held_text[i % len(held_text)] for i in range(n)],
                      **{m: pa.FixedSizeListArray.from_arrays(pa.array(np.stack(v).reshape(-1)), len(v[0])) for m, v in cols.items()}})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def exact_fused_top(snap: Snapshot, path: Path, n: int, k: int = 10) -> list[list[str]]:
    """Exact fused top ``k`` of each text query (no BM25, as the recall pass runs without text):
    every scene scored with the retriever's own calibration and video prior."""
    retriever = HierarchicalRetriever(lambda: snap, {}, RetrievalConfig(merge_adjacent=False))
    b, derived = retriever._take()
    cfg = retriever.config
    t = pa.ipc.open_file(str(path)).read_all()
    alive = np.flatnonzero(snap.catalog.alive)
    videos = retriever._video_level(b, derived)
    positions = videos.positions_of(snap.catalog.video_ids(alive))
    out = []
    for i in range(min(n, t.num_rows)):
        qv = {m: np.asarray(t.column(m)[i].as_py(), np.float32) for m in ("text", "caption", "visual", "audio")}
        cal = retriever._calibrations(b, qv)
        fused = np.zeros(len(alive))
        for m, q in qv.items():
            for start in range(0, len(alive), 200_000):
                rows = alive[start : start + 200_000]
                fused[start : start + len(rows)] += cfg.weights[m] * (snap.rows[m].take(rows) @ q - cal[m].mean) / cal[m].std
        fused /= sum(cfg.weights[m] for m in qv)
        prior = videos.prior(qv, cfg.weights, videos.calibrations(qv, cfg.weights), np.arange(len(videos)))
        fused += cfg.prior_weight * prior[positions]
        out.append(snap.catalog.scene_ids(alive[np.argsort(-fused)[:k]]))
    return out


def recall(hits: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([len(set(h) & set(e)) / len(e) for h, e in zip(hits, exact)]))  # zip: the first len(exact) queries


def measure_store(name: str, db: Path, queries: Path, exact: list[list[str]], trees: dict[str, Path], build_s: dict) -> dict:
    out = {}
    for code, tree in trees.items():
        colds = [child(code, db, queries, "cold", tree) for _ in range(COLD_RUNS)]
        warm = child(code, db, queries, "queries", tree)
        out[code] = {
            "build_s": build_s[code],
            "cold_open_to_first_answer_s": float(np.median([c["open_to_first_answer_s"] for c in colds])),
            "cold_runs": colds,
            "lancedb_imported_cold": any(c["lancedb_imported"] for c in colds),
            "lancedb_imported_after_queries": warm["lancedb_imported"],
            "text_query": warm["text"], "image_query": warm["image"],
            "recall_at_10": recall(warm["text_hits_fused"], exact),
            "_hits": warm["text_hits"],
        }
        print(f"{name} {code}: {json.dumps({k: v for k, v in out[code].items() if not k.startswith('_') and k != 'cold_runs'})}", flush=True)
    if len(trees) == 2:
        out["same_text_hits"] = float(np.mean([a == b for a, b in zip(out["new"]["_hits"], out["old"]["_hits"])]))
        out["new_over_old_text_p50"] = out["new"]["text_query"]["p50_ms"] / out["old"]["text_query"]["p50_ms"]
    for code in trees:
        out[code].pop("_hits")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--real", type=int, default=120_000)
    parser.add_argument("--baseline", help="a commit with the old query path (e.g. e701c10), run from a git worktree")
    parser.add_argument("--keep", help="build the stores under this folder and keep them (reused when there)")
    parser.add_argument("--stores", default="text,keyframes")
    parser.add_argument("--recall-queries", type=int, default=100, help="queries whose exact fused top 10 is computed")
    args = parser.parse_args()

    sentences, real = minilm_corpus(args.real + args.queries)
    real, held_out = real[: args.real], real[args.real :]
    held_text = sentences[args.real :]
    sentences = sentences[: args.real]
    spectrum = Spectrum(real)
    root = Path(args.keep or tempfile.mkdtemp(prefix="egorag-snapbench-"))
    trees = {"new": REPO}
    worktree = None
    if args.baseline:
        worktree = Path(tempfile.mkdtemp(prefix="egorag-baseline-")) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.baseline], cwd=REPO, check=True, capture_output=True)
        trees["old"] = worktree
    figures = {"baseline": args.baseline}
    try:
        for name in args.stores.split(","):
            db = root / f"{name}_{args.scenes}"
            if not (db / "scenes.lance").exists():
                t0 = time.perf_counter()
                build_store(db, args.scenes, real, sentences, spectrum, keyframes=name == "keyframes")
                figures[f"{name}_lance_write_s"] = time.perf_counter() - t0
            shutil.rmtree(db / files.SNAPSHOTS, ignore_errors=True)
            shutil.rmtree(db / "faiss", ignore_errors=True)
            (db / "videos.snapshot.parquet").unlink(missing_ok=True)
            store = LanceSceneStore(db)
            t0 = time.perf_counter()
            build_snapshot(store)
            build_s = {"new": time.perf_counter() - t0}
            if worktree is not None:
                build_s["old"] = build_old(db, worktree)
            snap = Snapshot.open(files.newest(db)[1])
            queries = root / f"queries_{name}_{args.scenes}.arrow"
            make_queries(store, snap, held_out, held_text, spectrum, args.queries, queries)
            exact = exact_fused_top(snap, queries, args.recall_queries)
            figures[name] = measure_store(name, db, queries, exact, trees, build_s)
            figures[name]["disk_mb"] = {"snapshot": sum(p.stat().st_size for p in (db / files.SNAPSHOTS).rglob("*") if p.is_file()) / 2**20}
            del snap, store
    finally:
        if worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, capture_output=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures, indent=1))
    suffix = "" if args.stores == "text,keyframes" else "_" + args.stores.replace(",", "_")
    save(f"snapshot_bench_{args.scenes}{suffix}", {"scenes": args.scenes, "queries": args.queries, "figures": figures})


if __name__ == "__main__":
    main()
