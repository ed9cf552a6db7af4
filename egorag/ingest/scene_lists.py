"""Scene lists given with the videos (``egorag index --scenes``), used exactly instead of shot
detection: PySceneDetect's CSV (``scenedetect ... list-scenes``), a two-column CSV of start and
end, or JSON ``[[start, end], ...]`` (seconds, or ``mm:ss`` / ``hh:mm:ss`` strings). A folder
holds one list per video, named ``<video file name>.scenes.json`` (or ``.csv``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from egorag.errors import EgoragError

END_SLACK_S = 0.5  # a list may end this far past the decoded duration (container rounding)


class SceneListError(EgoragError):
    """A scene list that cannot be read or does not fit its video; the message names the file
    and the line (or item)."""


def list_for(video: Path, scenes: Path) -> Path | None:
    """The scene list of ``video``: ``scenes`` itself when it is a file, else the one named for
    the video in the folder ``scenes`` (None: there is none, the video is shot-detected)."""
    if scenes.is_dir():
        for suffix in (".scenes.json", ".scenes.csv"):
            candidate = scenes / f"{video.name}{suffix}"
            if candidate.is_file():
                return candidate
        return None
    if not scenes.is_file():
        raise SceneListError(f"{scenes}: no such scene list (a .csv or .json file, or a folder of <video>.scenes.json)")
    return scenes


def read_scene_list(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, where) of each listed scene; ``where`` names its line or item for errors."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneListError(f"{path}: cannot read the scene list ({exc})") from None
    if path.suffix.lower() == ".json":
        return _from_json(path, text)
    return _from_csv(path, text)


def check_scene_list(path: Path, scenes: Sequence[tuple[float, float, str]], duration: float) -> list[tuple[float, float]]:
    """The scenes as (start, end), refused unless each is a span inside the video, in order and
    without overlap."""
    if not scenes:
        raise SceneListError(f"{path}: the scene list is empty")
    out: list[tuple[float, float]] = []
    for start, end, where in scenes:
        if not 0 <= start < end:
            raise SceneListError(f"{path}:{where}: a scene must start at 0 s or later and end after it starts "
                                 f"(got {start:g} to {end:g})")
        if start >= duration:
            raise SceneListError(f"{path}:{where}: the scene starts at {start:g} s, after the video's end ({duration:.2f} s)")
        if end > duration + END_SLACK_S:
            raise SceneListError(f"{path}:{where}: the scene ends at {end:g} s, after the video's end ({duration:.2f} s)")
        if out and start < out[-1][1] - 1e-3:
            raise SceneListError(f"{path}:{where}: the scene starts at {start:g} s, before the previous one ends "
                                 f"({out[-1][1]:g} s): scenes must be in order and must not overlap")
        out.append((start, min(end, duration)))
    return out


def _number(value, path: Path, where: str) -> float:
    from egorag.times import parse_time

    try:
        return parse_time(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError):
        raise SceneListError(f"{path}:{where}: {value!r} is not a time (seconds, mm:ss or hh:mm:ss)") from None


def _from_json(path: Path, text: str) -> list[tuple[float, float, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SceneListError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise SceneListError(f"{path}: a JSON scene list is a list of [start, end] pairs")
    out = []
    for i, item in enumerate(data, 1):
        where = f"item {i}"
        if isinstance(item, dict) and "start" in item and "end" in item:
            item = [item["start"], item["end"]]
        if not isinstance(item, list) or len(item) != 2:
            raise SceneListError(f"{path}:{where}: expected [start, end], got {json.dumps(item)[:60]}")
        out.append((_number(item[0], path, where), _number(item[1], path, where), where))
    return out


def _from_csv(path: Path, text: str) -> list[tuple[float, float, str]]:
    rows = list(csv.reader(io.StringIO(text)))
    start_col, end_col, first = 0, 1, 0
    for n, row in enumerate(rows[:3]):  # PySceneDetect: an optional "Timecode List:" line, then its header
        names = [c.strip() for c in row]
        if "Start Time (seconds)" in names and "End Time (seconds)" in names:
            start_col, end_col, first = names.index("Start Time (seconds)"), names.index("End Time (seconds)"), n + 1
            break
        if names and names[0].lower() in ("start", "start time", "begin"):  # a header over two columns
            first = n + 1
            break
    out = []
    for n, row in enumerate(rows[first:], first + 1):
        if not row or not any(c.strip() for c in row):
            continue
        where = f"{n}"
        if len(row) <= max(start_col, end_col):
            raise SceneListError(f"{path}:{where}: expected a start and an end, got {','.join(row)[:60]!r}")
        out.append((_number(row[start_col], path, where), _number(row[end_col], path, where), where))
    return out
