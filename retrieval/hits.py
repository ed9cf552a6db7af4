"""What a search returns: time-stamped hits that explain their score."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Hit:
    """One retrieved time range (a scene, or adjacent scenes merged) of one video.

    ``scores`` holds each modality's raw similarity (cosine; ``bm25`` its raw BM25 score),
    ``prior`` the video's calibrated prior, ``score`` the fused score the ranking used.
    """

    scene_id: str
    video_id: str
    video: str
    scene: int
    start: float
    end: float
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    prior: float = 0.0
    transcript: str = ""
    caption: str = ""
    moment: float | None = None  # the best-matching keyframe's time, when the visual modality ran
    scene_ids: tuple[str, ...] = ()  # all scenes merged into this hit

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scene_ids"] = list(self.scene_ids)
        return d


@dataclass(frozen=True)
class SearchResult:
    query: str
    hits: list[Hit]

    def to_dict(self) -> dict:
        return {"query": self.query, "hits": [h.to_dict() for h in self.hits]}


def parse_time(value: str | float) -> float:
    """Seconds from ``12.5``, ``mm:ss`` or ``hh:mm:ss`` (the form :func:`mmss` writes)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            parts = [float(p) for p in str(value).split(":")]
        except ValueError:
            raise ValueError(f"not a time: {value!r} (use seconds, mm:ss or hh:mm:ss)") from None
        seconds = 0.0
        for p in parts:
            seconds = seconds * 60 + p
    if not math.isfinite(seconds):
        raise ValueError(f"not a time: {value!r} (a time must be a finite number of seconds)")
    return seconds


def mmss(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"
