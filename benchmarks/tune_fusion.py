"""Choose the default fusion weights on the dev set's tune split; report the held-out test split.

    python benchmarks/tune_fusion.py --db DEVDB     # DEVDB: `egorag index benchmarks/data/devset --db DEVDB`

Only the modalities present in the store can be tuned (here: text and BM25; visual, audio and
caption need weights that this machine cannot load).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERE, save  # noqa: E402

import egorag  # noqa: E402
from retrieval.evaluate import evaluate, load_queries  # noqa: E402
from retrieval.hierarchical import HierarchicalRetriever, Query  # noqa: E402

GRID = {"bm25": [0.0, 0.1, 0.2, 0.3, 0.5, 0.8], "prior": [0.0, 0.1, 0.2, 0.3, 0.5, 0.8]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    engine = egorag.Engine(args.db)
    base = engine.retriever()
    splits = {s: load_queries(HERE / "data" / "devset" / f"queries_{s}.jsonl") for s in ("tune", "test")}
    rows = []
    for bm25, prior in itertools.product(GRID["bm25"], GRID["prior"]):
        weights = dict(engine.config.retrieval.weights, bm25=bm25)
        cfg = replace(engine.config.retrieval, weights=weights, prior_weight=prior)
        r = HierarchicalRetriever(base.backend, base.encoders, cfg)
        m = {s: evaluate(lambda texts: r.search_many([Query(text=t) for t in texts], 10), q) for s, q in splits.items()}
        rows.append({"bm25": bm25, "prior": prior, **{f"{s}_{k}": v for s, mm in m.items() for k, v in mm.to_dict().items() if k != "n"}})
        print(f"bm25={bm25:.1f} prior={prior:.1f}  tune MRR {m['tune'].mrr:.3f} hit@1 {m['tune'].hit_at_1:.3f}   test MRR {m['test'].mrr:.3f} hit@1 {m['test'].hit_at_1:.3f}")
    # best on the tune split; ties go to the smaller weights (the simpler model)
    best = max(rows, key=lambda r: (round(r["tune_mrr"], 6), round(r["tune_hit_at_1"], 6), -r["bm25"] - r["prior"]))
    print(f"best on tune: bm25={best['bm25']} prior={best['prior']} -> test MRR {best['test_mrr']:.3f}, hit@1 {best['test_hit_at_1']:.3f}")
    save("tune_fusion", {"grid": GRID, "rows": rows, "best": best})


if __name__ == "__main__":
    main()
