"""What a search returns: time-stamped hits that explain their score."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Hit:
    """One retrieved time range (a scene, or adjacent scenes merged) of one video.

    ``score`` is the fused score the ranking used, and ``scores`` what each source added to it
    (each modality, ``bm25``, and ``prior``, the video's share): they add up to ``score``.
    Under weighted fusion (the default) a modality's share is its weight times how many standard
    deviations the scene's similarity stands above the collection's for this query, over the sum
    of the weights: 0 is an average scene, and a weak hit may be negative. Under RRF each share
    is ``weight / (rrf_k + rank)``. ``similarities`` holds the raw values (cosine per modality,
    ``bm25`` the raw BM25 score) and ``prior`` the video's calibrated prior.
    """

    scene_id: str
    video_id: str
    video: str
    scene: int
    start: float
    end: float
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    similarities: dict[str, float] = field(default_factory=dict)
    prior: float = 0.0
    transcript: str = ""
    caption: str = ""
    screen_text: str = ""  # on-screen text (OCR), one line per line
    audio_events: tuple[str, ...] = ()  # audio event tags heard in the scenes
    speakers: tuple[str, ...] = ()  # who talks in the scenes (diarization)
    # when to start watching: the best-matching keyframe's time (visual), else when the query's
    # words were said or shown (the spoken word or screen line holding most of them)
    moment: float | None = None
    moment_text: str = ""  # the spoken word or screen line at ``moment`` (empty for a keyframe)
    moment_source: str = ""  # "visual" (a keyframe), "speech" or "screen"; empty without a moment
    scene_ids: tuple[str, ...] = ()  # all scenes merged into this hit

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scene_ids"] = list(self.scene_ids)
        d["audio_events"], d["speakers"] = list(self.audio_events), list(self.speakers)
        return d


@dataclass(frozen=True)
class SearchResult:
    query: str
    hits: list[Hit]

    def to_dict(self) -> dict:
        return {"query": self.query, "hits": [h.to_dict() for h in self.hits]}
