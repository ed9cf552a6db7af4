"""The filter a search takes: some videos (ids or a path glob) and a time range in the video."""

from __future__ import annotations

import math
from dataclasses import dataclass

from egorag.errors import QueryError
from egorag.schema import Scene


@dataclass(frozen=True)
class SceneFilter:
    """Restricts a search: to some videos (ids or a path glob), to a time range in the video, to
    scenes with an audio event tag or a speaker.

    ``time_from``/``time_to`` keep scenes overlapping ``[time_from, time_to]``; ``time_to`` alone is
    "before time T", for egocentric "when did I last ..." questions. ``audio_events`` keeps scenes
    tagged with any of them, ``speakers`` scenes where any of them talks (labels are stored
    lower-cased and match case-insensitively); different fields must all hold.
    """

    video_ids: tuple[str, ...] = ()
    path_glob: str | None = None
    time_from: float | None = None
    time_to: float | None = None
    audio_events: tuple[str, ...] = ()
    speakers: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("time_from", "time_to"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
                raise QueryError(f"a time filter must be a finite number of seconds, got {name} = {value!r}")

    @classmethod
    def parse(cls, video=None, path: str | None = None, time_from=None, time_to=None, audio_event=None,
              speaker=None) -> SceneFilter | None:
        """From a request's values (HTTP, MCP, a retriever's filters): one video id or a list, a
        path glob, times as seconds, ``mm:ss`` or ``hh:mm:ss``, one audio event tag or a list,
        one speaker or a list. None when nothing restricts; a bad time is a :class:`QueryError`
        naming its field (``from`` / ``to``)."""
        from egorag.times import parse_time

        times = {}
        for name, value in (("from", time_from), ("to", time_to)):
            if value is not None:
                try:
                    times[name] = parse_time(value)
                except ValueError as exc:
                    raise QueryError(f"{name!r}: {exc}") from None
        where = cls(_strings(video), path, times.get("from"), times.get("to"), _strings(audio_event), _strings(speaker))
        return None if where.is_empty() else where

    def is_empty(self) -> bool:
        return (not self.video_ids and self.path_glob is None and self.time_from is None and self.time_to is None
                and not self.audio_events and not self.speakers)

    def labels(self) -> list[tuple[str, tuple[str, ...]]]:
        """(scenes table column, wanted labels) of each label field that restricts."""
        return [(column, wanted) for column, wanted in (("audio_events", self.audio_events), ("speakers", self.speakers)) if wanted]

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
        for column, wanted in self.labels():  # labels are stored lower-cased
            clauses.append(f"array_has_any({column}, [{', '.join(sql_quote(w.lower()) for w in wanted)}])")
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
        for labels, wanted in ((scene.audio_events, self.audio_events), (scene.speakers, self.speakers)):
            if wanted and not {w.lower() for w in wanted} & {label.lower() for label in labels}:
                return False
        return True


def _strings(value) -> tuple[str, ...]:
    """One string or a list of them, as a tuple."""
    return (value,) if isinstance(value, str) else tuple(value or ())


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
