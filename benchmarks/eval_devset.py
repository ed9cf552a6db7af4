"""Index the dev set and report the modality ablation (temporal hit@k, MRR) on both splits.

    python benchmarks/eval_devset.py [--db DIR] [--scene-text joined|labelled] [--text-model NAME] [--asr-model NAME]
                                     [--words-by sentence|word] [--query-precision int8|float32]

The default store is a fresh temporary one; ``--scene-text`` picks what a scene's text vector
embeds (``[text] scene_text``), ``--text-model`` the text encoder (``[text] model``),
``--asr-model`` the whisper model (``[asr] model``); the saved JSON is named after each that is
not the default.
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
sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))

from common import HERE, save  # noqa: E402

import egorag  # noqa: E402
from egorag.config import AsrConfig, EngineConfig, SceneConfig, TextConfig  # noqa: E402

DEVSET = HERE / "data" / "devset"


def misses(engine, split: str) -> dict:
    """Where the first hit lands for the narrated queries of ``split`` that miss at rank 1: the
    right video's neighbouring scene, another scene of it, or another video; counted apart for
    the videos whose picture cuts before the narrator finishes a topic (L-cuts, ``devset.py``)."""
    import json
    from collections import Counter

    from topics_more import THEMES_MORE

    from retrieval.evaluate import is_hit, load_queries

    lcut = {f"{theme}.mp4" for n, theme in enumerate(THEMES_MORE) if n % 2}
    path = DEVSET / f"queries_{split}_narrated.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    counts = Counter()
    for row, query in zip(rows, load_queries(path)):
        hits = engine.search(query.query, k=1).hits
        kind = "L-cut videos" if query.video in lcut else "other videos"
        if hits and is_hit(hits[0], query):
            counts[f"{kind}: hit"] += 1
            continue
        top = hits[0] if hits else None
        if top is None or Path(top.video).name != query.video:
            counts[f"{kind}: another video"] += 1
        else:
            gap = min(abs(top.start - query.end), abs(top.end - query.start))
            counts[f"{kind}: " + ("the neighbouring scene" if gap < 1.0 else "another scene of the video")] += 1
    return dict(sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="store to use (indexed first if empty)")
    parser.add_argument("--scene-text", choices=["joined", "labelled"], default=TextConfig.scene_text)
    parser.add_argument("--text-model", default=TextConfig.model)
    parser.add_argument("--asr-model", default=AsrConfig.model)
    parser.add_argument("--query-precision", choices=["int8", "float32"], default=TextConfig.query_precision)
    parser.add_argument("--words-by", choices=["sentence", "word"], default=SceneConfig.words_by,
                        help="how spoken words join scenes ([scenes] words_by)")
    args = parser.parse_args()
    db = args.db or tempfile.mkdtemp(prefix="egorag-devset-")
    engine = egorag.Engine(db, EngineConfig(text=TextConfig(model=args.text_model, scene_text=args.scene_text,
                                                            query_precision=args.query_precision),
                                            asr=AsrConfig(model=args.asr_model), scenes=SceneConfig(words_by=args.words_by)))
    t0 = time.perf_counter()
    report = engine.index([DEVSET])
    index_s = time.perf_counter() - t0
    print(f"indexed {len(report.indexed)} videos ({report.scenes} scenes) in {time.perf_counter() - t0:.1f}s; "
          f"modalities: {[s.name for s in report.modalities if s.enabled]}")
    results = {}
    for split in ("tune", "test"):
        for part in ("", "_narrated", "_screen"):  # every query, then each kind (narrated or on-screen answers)
            path = DEVSET / f"queries_{split}{part}.jsonl"
            if not path.exists():
                continue
            metrics = engine.evaluate(path, ablation=True)
            results[split + part] = {name: m.to_dict() for name, m in metrics.items()}
            print(f"\n{split}{part} ({next(iter(metrics.values())).n} queries)")
            print("| configuration | hit@1 | hit@5 | hit@10 | MRR |\n|---|---|---|---|---|")
            for name, m in metrics.items():
                print(f"| {name} | {m.hit_at_1:.3f} | {m.hit_at_5:.3f} | {m.hit_at_10:.3f} | {m.mrr:.3f} |")
    results["misses"] = {split: misses(engine, split) for split in ("tune", "test")}
    print("\nwhere the first hit of a missed narrated query lands:", results["misses"])
    chosen = ((args.scene_text, TextConfig.scene_text), (args.text_model, TextConfig.model), (args.asr_model, AsrConfig.model),
              (args.words_by, SceneConfig.words_by), (args.query_precision, TextConfig.query_precision))
    name = "eval_devset" + "".join(f"_{value}" for value, default in chosen if value != default)
    save(name, {"retrieval": vars(engine.config.retrieval), "scene_text": args.scene_text, "text_model": args.text_model,
                "asr_model": args.asr_model, "words_by": args.words_by, "query_precision": args.query_precision,
                "index_s": index_s, "stage_seconds": report.stage_seconds, "results": results,
                         "modalities": {s.name: s.enabled for s in report.modalities}})


if __name__ == "__main__":
    main()
