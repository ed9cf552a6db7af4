"""Screen text inside the scene text (as egorag embeds it) or as its own vector: which ranks better?

    python benchmarks/screen_text_study.py --db DEVDB   # DEVDB: the dev set indexed with the defaults

Dense scores only (BM25 reads the screen text either way), on the indexed scenes of the dev set:
"joined" embeds transcript + caption + screen text as one text (the ``text`` vector as stored);
"own vector" embeds the spoken part and the screen text apart and scores a scene by their
maximum, or by a weighted sum whose weight is chosen on the tune split. Hit@1 and MRR per split
and kind (narrated answers, on-screen answers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import HERE, save  # noqa: E402

import egorag  # noqa: E402
from egorag.ingest.pipeline import text_to_embed  # noqa: E402

DEVSET = HERE / "data" / "devset"


def metrics(scores: np.ndarray, right: np.ndarray) -> dict:
    """``scores``: queries x scenes; ``right``: the same shape, True where a scene is a hit."""
    order = np.argsort(-scores, axis=1)
    ranks = np.array([np.flatnonzero(right[i, order[i]])[0] + 1 if right[i].any() else np.inf for i in range(len(scores))])
    return {"hit_at_1": float((ranks == 1).mean()), "mrr": float((1.0 / ranks).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    engine = egorag.Engine(args.db)
    store = engine.store()
    scenes = [s for v in store.videos() for s in store.scenes_of(v.video_id)]
    encoder = engine.query_encoders()["text"]
    spoken = [" ".join(p for p in (s.transcript, s.caption) if p) for s in scenes]

    def embed(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), encoder.dim), np.float32)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if keep:
            out[keep] = encoder.encode_documents([texts[i] for i in keep])
        return out, np.array([bool(t.strip()) for t in texts])

    joined, has_joined = embed([text_to_embed(s.transcript, s.caption, s.screen_text) for s in scenes])
    said, has_said = embed(spoken)
    shown, has_shown = embed([s.screen_text for s in scenes])
    results = {}
    for split in ("tune", "test"):
        for kind in ("narrated", "screen"):
            rows = [json.loads(line) for line in (DEVSET / f"queries_{split}_{kind}.jsonl").read_text().splitlines()]
            q = encoder.encode_queries([r["query"] for r in rows])
            right = np.array([[Path(s.video_path).name == r["video"] and s.start < r["end"] and s.end > r["start"] for s in scenes]
                              for r in rows])
            a = np.where(has_joined, q @ joined.T, -1.0)
            s1, s2 = np.where(has_said, q @ said.T, -1.0), np.where(has_shown, q @ shown.T, -1.0)
            results[f"{split}_{kind}"] = {"joined": metrics(a, right), "own vector, max": metrics(np.maximum(s1, s2), right),
                                          **{f"own vector, {w:.1f} said + {1 - w:.1f} shown": metrics(w * np.maximum(s1, 0) + (1 - w) * np.maximum(s2, 0), right)
                                             for w in np.arange(0.1, 1.0, 0.1)}}
    tune = {name: np.mean([results[f"tune_{k}"][name]["mrr"] for k in ("narrated", "screen")]) for name in results["tune_narrated"]}
    best = max((n for n in tune if n.startswith("own vector, 0")), key=tune.get)
    print(f"weighted sum chosen on tune: {best}")
    print("| split | joined hit@1 / MRR | own vector, max | " + best + " |\n|---|---|---|---|")
    for key, row in results.items():
        cells = [f"{row[n]['hit_at_1']:.3f} / {row[n]['mrr']:.3f}" for n in ("joined", "own vector, max", best)]
        print(f"| {key} | " + " | ".join(cells) + " |")
    save("screen_text_study", {"results": results, "chosen_on_tune": best})


if __name__ == "__main__":
    main()
