"""Query-path benchmark: egorag's full hierarchical fused query vs raw FAISS and raw LanceDB on
the same vectors, with recall against exact fused search, build time, RAM, disk and cold start.

    python benchmarks/search_bench.py --scenes 100000 [--queries 200]

Vectors: the text column holds real all-MiniLM-L6-v2 embeddings of real sentences found on this
machine (docstrings of the installed Python packages), cached in benchmarks/cache/. Beyond those,
and for the caption (384-d), visual (512-d) and audio (512-d) columns, vectors are synthetic with
the real embeddings' spectrum: a real anchor plus a perturbation drawn from the real data's top
principal components, mapped to the column's size by a fixed random isometry. Not i.i.d. noise.
Each scene's transcript is a real sentence (its own for the first 120k scenes), so queries with
text run BM25 too; egorag's BM25 is timed beside LanceDB's native full-text search.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from common import HERE, save  # noqa: E402

from egorag.config import RetrievalConfig  # noqa: E402
from egorag.schema import EncoderFingerprint  # noqa: E402
from index import files  # noqa: E402
from index.build import build_snapshot  # noqa: E402
from index.lance import LanceSceneStore  # noqa: E402
from index.snapshot import Snapshot, Snapshots  # noqa: E402
from index.vectors import FaissOptions  # noqa: E402
from retrieval.hierarchical import HierarchicalRetriever  # noqa: E402

CACHE = HERE / "cache"
# text: MiniLM's 384, or (EGORAG_BENCH_TEXT_DIM, --text-dim) the same vectors mapped by a fixed
# isometry to a wider column, e.g. 768 as all-mpnet-base-v2 stores: the same similarities and
# ranking, the wider column's memory and scan
DIMS = {"text": int(os.environ.get("EGORAG_BENCH_TEXT_DIM", 384)), "caption": 384, "visual": 512, "audio": 512}
SCENES_PER_VIDEO = 50
COLD_RUNS = 3
BATCH = 32  # queries per call in the batched figure


# -- data -------------------------------------------------------------------------------------

def real_sentences(n: int) -> list[str]:
    roots = [Path(sys.base_prefix) / "lib", Path(sys.prefix) / "lib"]
    seen, out = set(), []
    for root in roots:
        for f in sorted(root.rglob("*.py")):
            try:
                tree = ast.parse(f.read_text(errors="ignore"))
            except (SyntaxError, ValueError, RecursionError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node) or ""
                    for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                        if 30 <= len(s) <= 300 and sum(c.isalpha() for c in s) > 0.7 * len(s) and s not in seen:
                            seen.add(s)
                            out.append(s)
                            if len(out) >= n:
                                return out
    return out


def minilm_corpus(n: int) -> tuple[list[str], np.ndarray]:
    """n real sentences and their MiniLM embeddings (cached as Arrow IPC)."""
    path = CACHE / f"minilm_{n}.arrow"
    if path.exists():
        t = pa.ipc.open_file(str(path)).read_all()
        return t.column("sentence").to_pylist(), t.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, 384)
    from egorag.encoders.sentence import SentenceEncoder

    sentences = real_sentences(n)
    print(f"embedding {len(sentences)} real sentences with MiniLM (cached afterwards)...", flush=True)
    vectors = SentenceEncoder("all-MiniLM-L6-v2", batch_size=256).encode_documents(sentences)
    CACHE.mkdir(exist_ok=True)
    table = pa.table({"sentence": sentences, "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 384)})
    with pa.ipc.new_file(str(path), table.schema) as w:
        w.write_table(table)
    return sentences, vectors


class Spectrum:
    """Samples unit vectors like the real embeddings: real anchor + PCA-shaped perturbation."""

    def __init__(self, real: np.ndarray, components: int = 128, seed: int = 0):
        self.real = real
        centred = real - real.mean(axis=0)
        _, s, vt = np.linalg.svd(centred[: min(len(real), 20000)], full_matrices=False)
        self.basis = vt[:components]
        self.scale = s[:components] / np.sqrt(min(len(real), 20000))
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int, dim: int, noise: float = 0.6) -> np.ndarray:
        anchors = self.real[self.rng.integers(len(self.real), size=n)]
        z = self.rng.standard_normal((n, len(self.scale))).astype(np.float32) * self.scale
        x = anchors + noise * (z @ self.basis)
        if dim != x.shape[1]:
            x = x @ self.isometry(dim)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def isometry(self, dim: int) -> np.ndarray:
        return np.linalg.qr(np.random.default_rng(dim).standard_normal((dim, self.real.shape[1])))[0].T  # (384, dim)

    def perturb(self, vector: np.ndarray, noise: float) -> np.ndarray:
        """A query for ``vector``'s scene: the vector plus a spectrum-shaped perturbation."""
        z = (self.rng.standard_normal(len(self.scale)).astype(np.float32) * self.scale) @ self.basis
        if len(vector) != len(z):
            z = z @ self.isometry(len(vector))
        x = vector + noise * z
        return (x / np.linalg.norm(x)).astype(np.float32)


def build_store(root: Path, n: int, real: np.ndarray, sentences: list[str], spectrum: Spectrum,
                fps: dict[str, EncoderFingerprint] | None = None, keyframes: bool = False) -> tuple[LanceSceneStore, dict]:
    """Scenes whose text vectors are the real sentences' embeddings (then synthetic ones) and
    whose transcripts are those sentences (beyond them, the sentences again, for BM25). ``fps``:
    the modalities and their encoders' fingerprints (default: all four, made by "bench").
    ``keyframes``: each scene also gets 4-8 keyframe vectors with their times (the scene's
    vector plus spectrum-shaped noise), its visual vector their normalised mean, as ingest
    makes them."""
    fps = fps or {m: EncoderFingerprint(m, "bench", f"{m}-{d}", d) for m, d in DIMS.items()}
    store = LanceSceneStore(root, fps)
    n_videos = n // SCENES_PER_VIDEO
    t0 = time.perf_counter()
    for start in range(0, n_videos, 2000):  # chunks of 100k scenes
        vids = np.arange(start, min(n_videos, start + 2000))
        rows = len(vids) * SCENES_PER_VIDEO
        first = start * SCENES_PER_VIDEO
        vid_of = np.repeat(vids, SCENES_PER_VIDEO)
        idx = np.tile(np.arange(SCENES_PER_VIDEO), len(vids))
        cols = {}
        for m, d in ((m, fp.dim) for m, fp in fps.items()):
            if m == "text" and first < len(real):
                take = min(rows, len(real) - first)
                v = np.concatenate([real[first : first + take], spectrum.sample(rows - take, d)]) if take < rows else real[first : first + rows]
            else:
                v = spectrum.sample(rows, d)
            cols[m] = v
        extra = {}
        if keyframes and "visual" in cols:
            extra = keyframe_columns(cols, idx, spectrum)
        video_ids = [f"v{i:07d}" for i in vid_of]
        transcripts = [sentences[(first + j) % len(sentences)] for j in range(rows)]
        scenes = pa.table({
            "scene_id": [f"{v}:{i:05d}" for v, i in zip(video_ids, idx)],
            "video_id": video_ids,
            "video_path": [f"/corpus/{v}.mp4" for v in video_ids],
            "scene_index": idx.astype(np.int32),
            "start": idx * 10.0,
            "end": idx * 10.0 + 10.0,
            "transcript": transcripts, "caption": [""] * rows, "search_text": transcripts,
            **{f"{m}_vec": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1]) for m, v in cols.items()},
            **extra,
        })
        gv = {m: v.reshape(len(vids), SCENES_PER_VIDEO, -1).mean(axis=1) for m, v in cols.items()}
        gv = {m: v / np.linalg.norm(v, axis=1, keepdims=True) for m, v in gv.items()}
        videos = pa.table({
            "video_id": [f"v{i:07d}" for i in vids], "path": [f"/corpus/v{i:07d}.mp4" for i in vids],
            "content_hash": [f"h{i}" for i in vids], "size_bytes": np.zeros(len(vids), np.int64),
            "duration": np.full(len(vids), SCENES_PER_VIDEO * 10.0), "fps": np.full(len(vids), 25.0),
            "width": np.full(len(vids), 640, np.int32), "height": np.full(len(vids), 360, np.int32),
            "has_audio": np.ones(len(vids), bool), "n_scenes": np.full(len(vids), SCENES_PER_VIDEO, np.int32),
            "indexed_at": pa.array([0] * len(vids), pa.timestamp("us", tz="UTC")),
            **{f"{m}_vec": pa.FixedSizeListArray.from_arrays(pa.array(v.astype(np.float32).reshape(-1)), v.shape[1]) for m, v in gv.items()},
        })
        store.add_arrow(videos, scenes)
        del cols, scenes, videos
    lance_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.build_indexes(full_text=True)  # scalar indexes as Engine.index builds them, and LanceDB's BM25 to compare with
    return store, {"lance_write_s": lance_s, "lance_indexes_s": time.perf_counter() - t0}


def keyframe_columns(cols: dict[str, np.ndarray], idx: np.ndarray, spectrum: Spectrum) -> dict[str, pa.Array]:
    """4-8 keyframes per scene around its visual vector (which becomes their normalised mean,
    in ``cols``), as Lance list columns, with times 1 s apart from the scene's start."""
    rows, dim = cols["visual"].shape
    counts = 4 + np.arange(rows) % 5
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    kf = np.repeat(cols["visual"], counts, axis=0) + 0.6 * spectrum.sample(int(counts.sum()), dim)
    kf = (kf / np.linalg.norm(kf, axis=1, keepdims=True)).astype(np.float32)
    mean = np.add.reduceat(kf, starts, axis=0)
    cols["visual"] = (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)
    offsets = pa.array(np.concatenate([starts, [len(kf)]]).astype(np.int32))
    times = np.repeat(idx * 10.0, counts) + (np.arange(len(kf)) - np.repeat(starts, counts))
    return {
        "keyframe_vecs": pa.ListArray.from_arrays(offsets, pa.FixedSizeListArray.from_arrays(pa.array(kf.reshape(-1)), dim)),
        "keyframe_times": pa.ListArray.from_arrays(offsets, pa.array(times.astype(np.float64))),
    }


# -- measurement ------------------------------------------------------------------------------

def raw_index(vectors: np.ndarray, kind: str):
    """What a user of FAISS alone would build: IndexFlatIP, IndexIVFFlat (same nlist and
    training-sample size as egorag), IndexHNSWFlat; trained, empty."""
    from index.vectors import ivf_lists

    dim = vectors.shape[1]
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, FaissOptions().hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        return index
    nlist = ivf_lists(len(vectors))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), 64 * nlist), replace=False)
    index.train(vectors[np.sort(sample)])
    return index


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def pct(ms: list[float]) -> dict:
    a = np.array(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "qps": float(1000 / a.mean())}


def exact_fused(retriever, acc, qv, all_vectors, video_positions, k=10) -> list[int]:
    """The oracle: fused score of every scene, same calibration and prior as the retriever."""
    cfg = retriever.config
    total = sum(cfg.weights.get(m, 0) for m in qv)
    fused = np.zeros(len(video_positions))
    b, derived = retriever._take()
    for m, q in qv.items():
        cal = retriever._calibrations(b, {m: q})[m]  # the same calibration the retriever uses
        fused += cfg.weights[m] * (all_vectors[m] @ q - cal.mean) / cal.std
    fused /= total
    videos = retriever._video_level(b, derived)
    prior = videos.prior(qv, cfg.weights, videos.calibrations(qv, cfg.weights), np.arange(len(videos)))
    fused += cfg.prior_weight * prior[video_positions]
    return list(np.argsort(-fused)[:k])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--real", type=int, default=120_000, help="real sentences to embed (>= 100k)")
    parser.add_argument("--keep", help="build the store here and keep it (a store already there is reused; its FAISS indexes are always rebuilt)")
    parser.add_argument("--sweep", action="store_true", help="also measure recall and latency for larger candidate pools and nprobe")
    parser.add_argument("--index", default="auto", choices=["auto", "flat", "ivf", "hnsw"], help="egorag's FAISS index kind")
    parser.add_argument("--nprobe", type=int, default=FaissOptions().nprobe)
    parser.add_argument("--text-dim", type=int, default=384, help="the text column's width (see DIMS)")
    args = parser.parse_args()
    os.environ["EGORAG_BENCH_TEXT_DIM"] = str(args.text_dim)  # the child processes read it
    DIMS["text"] = args.text_dim

    sentences, real = minilm_corpus(args.real + args.queries)
    real, held_out = real[: args.real], real[args.real :]
    sentences, held_out_text = sentences[: args.real], sentences[args.real :]
    spectrum = Spectrum(real)
    if args.text_dim != real.shape[1]:  # the spectrum samples beyond the real vectors through the same isometry
        real, held_out = real @ spectrum.isometry(args.text_dim), held_out @ spectrum.isometry(args.text_dim)
    root = Path(args.keep or tempfile.mkdtemp(prefix="egorag-bench-")) / "db"
    if (root / "scenes.lance").exists():
        store = LanceSceneStore(root)
        assert store.count_scenes() == args.scenes, f"{root} holds {store.count_scenes()} scenes, not {args.scenes}"
        figures = {"lance": f"reused {root}"}
        shutil.rmtree(root / files.SNAPSHOTS, ignore_errors=True)
    else:
        store, figures = build_store(root, args.scenes, real, sentences, spectrum)
    options = FaissOptions(kind=args.index, nprobe=args.nprobe)
    _, figures["snapshot_build_s"] = timed(lambda: build_snapshot(store, options))
    acc, figures["snapshot_open_s"] = timed(lambda: Snapshot.open(files.newest(root)[1], options))
    assert any(t[0] for t in acc.texts.get(range(min(10, len(acc.catalog))))), f"{root} has no transcripts (built by an older benchmark): remove it"
    figures["sketch"] = {"modalities": list(acc.sketch_modalities), "rows": len(acc.sketch) if acc.sketch else 0}
    figures["index_kinds"] = {m: c.kind for m, c in acc.columns.items()}
    figures["disk_mb"] = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the build leaves GBs of written pages for the kernel to flush: let it finish before timing
    # queries, which otherwise share the machine with that writeback
    _, figures["writeback_s"] = timed(os.sync)

    # a query: a held-out real sentence (text); its nearest scene is the target, and the other
    # modalities' queries are perturbed copies of the target's vectors, as a real multimodal
    # query agrees across modalities
    queries = []
    for i in range(args.queries):
        qv = {"text": held_out[i % len(held_out)]}
        target = acc.catalog.row_of(acc.search("text", qv["text"], 10)[0][0][0])
        for m in DIMS:
            if m != "text":
                qv[m] = spectrum.perturb(acc.vectors(m, [target])[0], noise=1.0)
        queries.append(qv)
    cfg = RetrievalConfig(merge_adjacent=False)
    retriever = HierarchicalRetriever(lambda: acc, {}, cfg)
    retriever.search_vectors(queries[0], None, 10)  # warm caches (the video level)
    lat = []
    results = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for qv in queries:
        hits, s = timed(retriever.search_vectors, qv, None, 10)
        lat.append(s * 1000)
        results.append([h.scene_id for h in hits])
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / len(queries)
    figures["egorag_fused"] = {**pct(lat), "page_faults_per_query": faults}
    # batched: the same queries BATCH at a time (one sketch scan per batch, on every core)
    t0 = time.perf_counter()
    batched = [h for i in range(0, len(queries), BATCH) for h in retriever.search_vectors_many(queries[i : i + BATCH], [None] * len(queries[i : i + BATCH]), 10)]
    elapsed = time.perf_counter() - t0
    figures["egorag_fused_batched"] = {"batch": BATCH, "qps": len(queries) / elapsed, "ms_per_query": 1000 * elapsed / len(queries),
                                       "same_hits": float(np.mean([[h.scene_id for h in hits] == r for hits, r in zip(batched, results)]))}
    # one query's scan in one part per core (the default on a large store) vs the whole index on
    # one core, interleaved query by query so that both see the same machine
    split = acc.sketch._split_scan() if acc.sketch is not None else None
    if split is not None:
        lat_ab: dict[bool, list[float]] = {True: [], False: []}
        same = 0
        for i, qv in enumerate(queries):
            got = {}
            for parts in (True, False) if i % 2 else (False, True):
                acc.options = dataclasses.replace(acc.options, split_scan=parts)
                hits, s = timed(retriever.search_vectors, qv, None, 10)
                lat_ab[parts].append(s * 1000)
                got[parts] = [h.scene_id for h in hits]
            same += got[True] == got[False]
        acc.options = dataclasses.replace(acc.options, split_scan=True)
        figures["split_scan_ab"] = {"parts_per_core": pct(lat_ab[True]), "one_core": pct(lat_ab[False]), "same_hits": same / len(queries)}
    figures["per_column_ab"] = per_column_ab(acc, queries, options)
    # a restarted server: the same queries in a fresh process
    with tempfile.TemporaryDirectory() as tmp:
        files.write_arrays(Path(tmp) / "queries.arrow", {m: np.stack([q[m] for q in queries]) for m in DIMS})
        figures["fresh_process"] = fresh_queries(root, Path(tmp) / "queries.arrow")
    # the same queries with their text: BM25 joins the fusion (and its candidates)
    texts = [held_out_text[i % len(held_out_text)] for i in range(args.queries)]
    figures["egorag_fused_with_text"] = pct([timed(retriever.search_vectors, qv, t, 10)[1] * 1000 for qv, t in zip(queries, texts)])
    # BM25 side by side: egorag's postings vs LanceDB's native FTS, same texts, same k
    ours = [timed(acc.text_search, t, cfg.candidates) for t in texts]
    lance = [timed(store.text_search, t, cfg.candidates) for t in texts]
    figures["bm25"] = {
        "egorag": pct([s * 1000 for _, s in ours]),
        "lancedb_fts": pct([s * 1000 for _, s in lance]),
        "top10_jaccard": float(np.mean([
            len(a & b) / max(1, len(a | b))
            for a, b in ((set(acc.catalog.scene_ids([r for r, _ in o[:10]])), {i for i, _ in l[:10]}) for (o, _), (l, _) in zip(ours, lance))
        ])),
        # the same top-10 scores (the row sets differ only where tied scenes are cut at rank 10:
        # the corpus repeats its sentences beyond 120k scenes)
        "top10_scores_equal": float(np.mean([
            len(o[:10]) == len(l[:10]) and np.allclose([x for _, x in o[:10]], [x for _, x in l[:10]], rtol=1e-3)
            for (o, _), (l, _) in zip(ours, lance)
        ])),
    }

    # exact fused recall@10 (oracle over every scene)
    n_check = min(len(queries), 50 if args.scenes > 200_000 else 100)
    all_rows = np.arange(len(acc.catalog))
    all_vectors = {m: acc.rows[m].take(all_rows) for m in DIMS}
    video_positions = retriever._video_level(*retriever._take()).positions_of(acc.catalog.table.column("video_id").to_pylist())
    wanted = [set(acc.catalog.scene_ids(exact_fused(retriever, acc, qv, all_vectors, video_positions))) for qv in queries[:n_check]]
    del all_vectors
    figures["fused_recall_at_10"] = float(np.mean([len(w & set(got)) / 10 for w, got in zip(wanted, results)]))
    if args.sweep:  # recall bought with larger pools: same queries, same oracle
        figures["sweep"] = []
        sketch = acc.sketch
        settings = [("sketch", pool, keep, 100, args.nprobe) for pool, keep in ((1000, 300), (2000, 300), (3000, 300), (3000, 500), (5000, 300))]
        settings += [("per modality", 0, 0, c, p) for c, p in ((100, 32), (300, 32), (1000, 64), (1000, 128))]
        for path, pool, keep, candidates, nprobe in settings:
            acc.options = FaissOptions(kind=args.index, nprobe=nprobe)
            acc.sketch = sketch if path == "sketch" else None  # the per-modality path, as before the sketch
            config = RetrievalConfig(merge_adjacent=False, candidates=candidates, fused_pool=pool or 3000, fused_candidates=keep or 300)
            r = HierarchicalRetriever(lambda: acc, {}, config)
            r.search_vectors(queries[0], None, 10)
            got, ms = zip(*[timed(r.search_vectors, qv, None, 10) for qv in queries[:n_check]])
            rec = float(np.mean([len(w & {h.scene_id for h in g}) / 10 for w, g in zip(wanted, got)]))
            figures["sweep"].append({"path": path, "fused_pool": pool, "fused_candidates": keep, "candidates": candidates, "nprobe": nprobe,
                                     "recall_at_10": rec, **pct([x * 1000 for x in ms])})
            print(figures["sweep"][-1], flush=True)
        acc.options, acc.sketch = options, sketch

    # raw FAISS on one column (the text column, 384-d, real embeddings) and raw LanceDB
    text = store.scene_vectors("text")[1]
    qs = np.stack([q["text"] for q in queries])
    raw = {}
    flat_ids = None
    for kind in ("flat", "ivf", "hnsw") if args.scenes <= 200_000 else ("flat", "ivf"):
        ix, build_s = timed(raw_index, text, kind)
        _, add_s = timed(ix.add, text)
        params = faiss.SearchParametersIVF(nprobe=FaissOptions().nprobe) if kind == "ivf" else None
        single = []
        for q in qs:
            _, s = timed(lambda ix=ix, q=q: ix.search(q[None], 10, params=params))
            single.append(s * 1000)
        (_, ids), batch_s = timed(lambda ix=ix: ix.search(qs, 10, params=params))
        if kind == "flat":
            flat_ids = ids
        rec = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, flat_ids)]))
        raw[kind] = {**pct(single), "batched_qps": len(qs) / batch_s, "build_s": build_s + add_s, "recall_at_10_vs_flat": rec}
        del ix
    lance_lat = []
    for q in qs[:10]:
        _, s = timed(store.search, "text", q[None], 10)
        lance_lat.append(s * 1000)
    raw["lancedb_flat"] = pct(lance_lat)
    figures["raw_one_column"] = raw
    # the same FAISS work one fused query does, run alone: the sketch's PQ scan when there is a
    # sketch, else one search per column (the top videos' scenes are scored without an index)
    if acc.sketch is not None:
        sketch_queries = [acc.sketch_query({m: q for m, q in qv.items()}) for qv in queries[:50]]
        from index.vectors import single_threaded

        with single_threaded(True):  # the whole index on one core
            one_core = pct([timed(acc.sketch.pq.search, q[None], cfg.fused_pool)[1] * 1000 for q in sketch_queries])["p50_ms"]
        figures["faiss_scan_one_core_ms"] = one_core
        split = acc.sketch._split_scan()  # as egorag runs one query: one part per core on a large store
        per_query = pct([timed(split.search, q[None], cfg.fused_pool)[1] * 1000 for q in sketch_queries])["p50_ms"] if split is not None else one_core
    else:
        per_query = sum(
            pct([timed(acc.columns[m].search, queries[i][m], cfg.candidates, None, options)[1] * 1000 for i in range(50)])["p50_ms"]
            for m in DIMS
        )
    figures["faiss_work_per_fused_query_ms"] = per_query
    figures["egorag_over_raw_faiss"] = figures["egorag_fused"]["p50_ms"] / per_query

    figures["cold_start"] = cold_runs(root, COLD_RUNS)

    for k, v in figures.items():
        print(f"{k:28s} {v}")
    wide = "" if args.text_dim == 384 else f"_text{args.text_dim}"
    save(f"search_bench_{args.scenes}_{args.index}{wide}", {"scenes": args.scenes, "queries": args.queries, "index": args.index,
                                                           "nprobe": args.nprobe, "text_dim": args.text_dim, "figures": figures})


def per_column_ab(acc, queries, options: FaissOptions, k: int = 10) -> dict:
    """egorag's search of one column against raw FAISS's search of the same index (same
    parameters, one thread, as egorag runs a single query), interleaved query by query:
    ``search_keys`` is what the retriever calls (catalog rows); ``search`` is the store contract
    (scene ids, exact re-scoring from the row copies, a check for other processes' writes)."""
    from index.vectors import single_threaded

    out = {}
    for m in ("text", "visual"):
        column = acc.columns[m]
        params = column._params(None, options)
        lat: dict[str, list[float]] = {"raw_faiss": [], "egorag_search_keys": [], "egorag_search": []}
        same = 0
        for i, qv in enumerate(queries):
            q = np.ascontiguousarray(qv[m][None, :], dtype=np.float32)
            for name in list(lat) if i % 2 else list(lat)[::-1]:
                t0 = time.perf_counter()
                if name == "raw_faiss":
                    with single_threaded(True):
                        _, ids = column.index.search(q, k, params=params)
                elif name == "egorag_search_keys":
                    keys = acc.search_keys(m, q, k)
                else:
                    acc.search(m, q, k)
                lat[name].append((time.perf_counter() - t0) * 1000)
            same += set(ids[0][ids[0] >= 0].tolist()) == {r for r, _ in keys}
        figures = {name: pct(v) for name, v in lat.items()}
        raw_p50 = figures["raw_faiss"]["p50_ms"]
        out[m] = {"kind": column.kind, **figures, "same_rows": same / len(queries),
                  "search_keys_over_raw": figures["egorag_search_keys"]["p50_ms"] / raw_p50,
                  "search_over_raw": figures["egorag_search"]["p50_ms"] / raw_p50}
    return out


def cold(root: str) -> None:
    t0 = time.perf_counter()  # (the module's own imports ran before: see process_s)
    from index.snapshot import Snapshots
    from retrieval.hierarchical import HierarchicalRetriever

    t1 = time.perf_counter()
    snapshots = Snapshots(root, build=lambda wait: False)  # as the engine follows a store (no LanceDB while current)
    snapshot = snapshots.current()
    t2 = time.perf_counter()
    rng = np.random.default_rng(0)
    qv = {m: (lambda v: v / np.linalg.norm(v))(rng.standard_normal(d).astype(np.float32)) for m, d in DIMS.items()}
    HierarchicalRetriever(snapshots.current, {}, RetrievalConfig()).search_vectors(qv, "return the number of elements in the list", 10)
    t3 = time.perf_counter()
    print(json.dumps({"imports_s": t1 - t0, "open_s": t2 - t1, "first_query_s": t3 - t2, "open_to_first_answer_s": t3 - t1,
                      "snapshot": snapshot.generation, "lancedb_imported": "lancedb" in sys.modules}))


def fresh(root: str, queries_path: str) -> None:
    """The child of :func:`fresh_queries`: open the store, then answer every query once."""
    arrays = files.read_arrays(Path(queries_path))
    queries = [{m: arrays[m][i] for m in arrays} for i in range(len(next(iter(arrays.values()))))]
    snapshots = Snapshots(root, build=lambda wait: False)
    retriever = HierarchicalRetriever(snapshots.current, {}, RetrievalConfig(merge_adjacent=False))
    retriever.search_vectors(queries[0], None, 10)  # its caches (the video level)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    lat = [timed(retriever.search_vectors, qv, None, 10)[1] * 1000 for qv in queries]
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / len(queries)
    print(json.dumps({**pct(lat), "page_faults_per_query": faults}))


def fresh_queries(root, queries_path) -> dict:
    """The queries answered once each by a fresh process (a restarted server), after its open."""
    out = subprocess.run([sys.executable, __file__, "--fresh", str(root), str(queries_path)], capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold_runs(root, n: int) -> dict:
    """``n`` cold opens, each in a fresh process: imports, open + load persisted indexes, first
    answer (a text query, so BM25 runs too). ``process_s``: the whole process, interpreter start
    and every import included. Returns each run and the medians."""
    runs = []
    for _ in range(n):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--cold", str(root)], capture_output=True, text=True)
        process_s = time.perf_counter() - t0
        if out.returncode:
            return {"error": out.stderr[-500:]}
        runs.append(dict(json.loads(out.stdout.strip().splitlines()[-1]), process_s=process_s))
    medians = {k: float(np.median([r[k] for r in runs])) for k in runs[0] if isinstance(runs[0][k], float)}
    return {"runs": runs, "median": medians, "lancedb_imported": any(r["lancedb_imported"] for r in runs)}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--cold":  # one cold open (the child process)
        cold(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "--fresh":  # queries in a fresh process (the child)
        fresh(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "--cold-runs":  # --cold-runs DB N: cold opens of a kept store
        db = Path(sys.argv[2])
        figures = cold_runs(db, int(sys.argv[3]))
        print(json.dumps(figures, indent=1))
        scenes = files.read_manifest(files.newest(db)[1])["scenes"]
        save(f"search_bench_cold_{scenes}", {"db": str(db), "scenes": scenes, "figures": figures})
    else:
        main()
