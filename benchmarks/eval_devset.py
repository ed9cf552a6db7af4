"""Index the dev set and report the modality ablation (temporal hit@k, MRR) on both splits.

    python benchmarks/eval_devset.py [--db DIR]     # default: a fresh temporary store
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERE, save  # noqa: E402

import egorag  # noqa: E402

DEVSET = HERE / "data" / "devset"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="store to use (indexed first if empty)")
    args = parser.parse_args()
    db = args.db or tempfile.mkdtemp(prefix="egorag-devset-")
    engine = egorag.Engine(db)
    t0 = time.perf_counter()
    report = engine.index([DEVSET])
    print(f"indexed {len(report.indexed)} videos ({report.scenes} scenes) in {time.perf_counter() - t0:.1f}s; "
          f"modalities: {[s.name for s in report.modalities if s.enabled]}")
    results = {}
    for split in ("tune", "test"):
        metrics = engine.evaluate(DEVSET / f"queries_{split}.jsonl", ablation=True)
        results[split] = {name: m.to_dict() for name, m in metrics.items()}
        print(f"\n{split} split ({next(iter(metrics.values())).n} queries)")
        print("| configuration | hit@1 | hit@5 | hit@10 | MRR |\n|---|---|---|---|---|")
        for name, m in metrics.items():
            print(f"| {name} | {m.hit_at_1:.3f} | {m.hit_at_5:.3f} | {m.hit_at_10:.3f} | {m.mrr:.3f} |")
    save("eval_devset", {"retrieval": vars(engine.config.retrieval), "results": results,
                         "modalities": {s.name: s.enabled for s in report.modalities}})


if __name__ == "__main__":
    main()
