"""The filter a search takes: some videos (ids or a path glob) and a time range in the video."""

from __future__ import annotations

import math
from dataclasses import dataclass

from egorag.errors import QueryError
from egorag.schema import Scene


@dataclass(frozen=True)
class SceneFilter:
    """Restricts a search: to some videos (ids or a path glob) and to a time range in the video.

    ``time_from``/``time_to`` keep scenes overlapping ``[time_from, time_to]``; ``time_to`` alone is
    "before time T", for egocentric "when did I last ..." questions.
    """

    video_ids: tuple[str, ...] = ()
    path_glob: str | None = None
    time_from: float | None = None
    time_to: float | None = None

    def __post_init__(self):
        for name in ("time_from", "time_to"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
                raise QueryError(f"a time filter must be a finite number of seconds, got {name} = {value!r}")

    @classmethod
    def parse(cls, video=None, path: str | None = None, time_from=None, time_to=None) -> SceneFilter | None:
        """From a request's values (HTTP, MCP, a retriever's filters): one video id or a list, a
        path glob, times as seconds, ``mm:ss`` or ``hh:mm:ss``. None when nothing restricts; a
        bad time is a :class:`QueryError` naming its field (``from`` / ``to``)."""
        from egorag.times import parse_time

        times = {}
        for name, value in (("from", time_from), ("to", time_to)):
            if value is not None:
                try:
                    times[name] = parse_time(value)
                except ValueError as exc:
                    raise QueryError(f"{name!r}: {exc}") from None
        videos = (video,) if isinstance(video, str) else tuple(video or ())
        where = cls(videos, path, times.get("from"), times.get("to"))
        return None if where.is_empty() else where

    def is_empty(self) -> bool:
        return not self.video_ids and self.path_glob is None and self.time_from is None and self.time_to is None

    def to_sql(self) -> str | None:
        clauses = []
        if self.video_ids:
            clauses.append(f"video_id IN ({', '.join(sql_quote(v) for v in self.video_ids)})")
        if self.path_glob is not None:
            clauses.append(f"video_path LIKE {sql_quote(glob_to_like(self.path_glob))} ESCAPE '\\'")
        if self.time_from is not None:
            clauses.append(f"`end` > {float(self.time_from)!r}")
        if self.time_to is not None:
            clauses.append(f"start < {float(self.time_to)!r}")
        return " AND ".join(clauses) or None

    def matches(self, scene: Scene) -> bool:
        """The same predicate evaluated in Python (for backends without SQL)."""
        import fnmatch

        if self.video_ids and scene.video_id not in self.video_ids:
            return False
        if self.path_glob is not None and not fnmatch.fnmatchcase(scene.video_path, self.path_glob):
            return False
        if self.time_from is not None and not scene.end > self.time_from:
            return False
        if self.time_to is not None and not scene.start < self.time_to:
            return False
        return True


def sql_quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def glob_to_like(pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)
