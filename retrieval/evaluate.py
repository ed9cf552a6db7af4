"""Evaluation: temporal hit@k and MRR over a JSONL query set, and the modality ablation.

A query line is ``{"query": str, "video": path-or-name, "start": s, "end": s}``. A hit counts when
it is from the right video (same path, or same file name when the query gives a bare name) and
its time range overlaps the ground-truth interval.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from egorag.config import RetrievalConfig
from egorag.errors import EgoragError
from egorag.hits import Hit

KS = (1, 5, 10)


@dataclass(frozen=True)
class EvalQuery:
    query: str
    video: str
    start: float
    end: float


@dataclass(frozen=True)
class Metrics:
    n: int
    hit_at_1: float
    hit_at_5: float
    hit_at_10: float
    mrr: float

    def to_dict(self) -> dict:
        return asdict(self)


def load_queries(path: str | Path) -> list[EvalQuery]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise EgoragError(f"{path}: no such query file") from None
    queries = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            queries.append(EvalQuery(str(row["query"]), str(row["video"]), float(row["start"]), float(row["end"])))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise EgoragError(f"{path}:{n}: bad query line ({exc}); expected query, video, start, end") from None
    if not queries:
        raise EgoragError(f"{path}: no queries")
    return queries


def is_hit(hit: Hit, q: EvalQuery) -> bool:
    same_video = hit.video == q.video or (Path(q.video).name == q.video and Path(hit.video).name == q.video)
    return same_video and hit.start < q.end and hit.end > q.start


def score(ranked: Sequence[Sequence[Hit]], queries: Sequence[EvalQuery]) -> Metrics:
    hits = {k: 0 for k in KS}
    rr = 0.0
    for result, q in zip(ranked, queries):
        rank = next((i for i, h in enumerate(result[: max(KS)], 1) if is_hit(h, q)), None)
        if rank is not None:
            rr += 1.0 / rank
            for k in KS:
                hits[k] += rank <= k
    n = len(queries)
    return Metrics(n, hits[1] / n, hits[5] / n, hits[10] / n, rr / n)


def evaluate(search_many: Callable[[list[str]], list[list[Hit]]], queries: Sequence[EvalQuery]) -> Metrics:
    """The metrics of ``search_many`` (query texts -> each one's ranked hits) over ``queries``."""
    return score(search_many([q.query for q in queries]), queries)


def ablation_configs(base: RetrievalConfig, sources: Sequence[str]) -> dict[str, RetrievalConfig]:
    """Each source alone (no prior), fusion without the prior, and fusion with it."""
    configs = {}
    for s in sources:
        configs[f"{s} only"] = replace(base, weights={s: 1.0}, prior_weight=0.0, merge_adjacent=False)
    configs["fusion, no prior"] = replace(base, prior_weight=0.0)
    configs["fusion + prior"] = base
    if base.fusion != "rrf":
        configs["rrf + prior"] = replace(base, fusion="rrf")
    return configs
