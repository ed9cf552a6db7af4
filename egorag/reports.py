"""What the engine's long operations report: typed records, counted, never silent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class IndexReport:
    """What one ``index`` call did; skips and failures are counted, never silent."""

    indexed: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    scenes: int = 0
    video_seconds: float = 0.0
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    modalities: list[Any] = field(default_factory=list)  # ModalityStatus

    def to_dict(self) -> dict:
        """JSON-ready (what ``egorag index --json`` prints and an index job reports)."""
        return {
            "indexed": self.indexed, "replaced": self.replaced, "unchanged": self.unchanged,
            "failed": [{"path": p, "reason": r} for p, r in self.failed], "scenes": self.scenes,
            "video_seconds": round(self.video_seconds, 3), "wall_seconds": round(self.wall_seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "modalities": [{"name": m.name, "enabled": m.enabled, "detail": m.detail} for m in self.modalities],
        }


@dataclass
class CheckReport:
    """What ``Engine.check`` found: the store's own damage (``problems``, each with what to do)
    and the derived search files it found damaged and rebuilt (``repaired``)."""

    videos: int = 0
    scenes: int = 0
    search_files: int = 0
    repaired: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems
