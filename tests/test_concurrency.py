"""Two writers on one store are normal use: each video ends up indexed exactly once, nothing a
writer committed is lost, the listing equals the videos table, and the search files equal a
clean build's. Writers are real processes (and threads), interleaved by seeded pauses before
their LanceDB commits (tests/writer_proc.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import make_video
from writer_proc import engine

HELPER = Path(__file__).resolve().parent / "writer_proc.py"
QUERIES = ["lava from a volcano", "a hive of honey bees", "rings of saturn", "melting glacier ice", "bread in the oven"]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """Four short videos (3-6 s, distinct transcripts by length) in one folder."""
    d = tmp_path_factory.mktemp("library")
    for seconds, cuts in ((3, [40]), (4, [50]), (5, [60]), (6, [70, 110])):
        make_video(d / f"v{seconds}.mp4", cuts, 25 * seconds, audio_seconds=float(seconds), seed=seconds)
    return d


@pytest.fixture(scope="module")
def clean(library, tmp_path_factory) -> dict:
    """What one writer alone makes of the library: videos, scene rows and top hits."""
    db = tmp_path_factory.mktemp("clean") / "db"
    engine(str(db)).index([library])
    return state(db)


def start(spec: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HELPER), json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 180) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def state(db: Path) -> dict:
    """The store as a reader in a fresh process sees it, and as LanceDB holds it."""
    from index.lance import LanceSceneStore

    store = LanceSceneStore(db)
    table = store._videos.to_arrow()
    scenes = store._scenes.to_arrow()
    listed = finish(start({"db": str(db), "op": "search", "queries": QUERIES}))
    return {
        "videos": sorted(table.column("path").to_pylist()),
        "scene_rows": sorted(zip(scenes.column("video_path").to_pylist(), scenes.column("scene_index").to_pylist())),
        "listed": sorted(v.path for v in engine(str(db)).videos()),
        "hits": listed["hits"],
    }


def assert_same(got: dict, want: dict) -> None:
    assert got["videos"] == want["videos"], "every video exactly once"
    assert got["scene_rows"] == want["scene_rows"], "every scene row exactly once"
    assert got["listed"] == got["videos"], "egorag videos lists the videos table"
    for mine, theirs in zip(got["hits"], want["hits"]):
        assert [h[0] for h in mine] == [h[0] for h in theirs]
        assert [h[1] for h in mine] == pytest.approx([h[1] for h in theirs], abs=1e-4)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_indexers_on_one_folder(library, clean, tmp_path, seed):
    db = str(tmp_path / "db")
    procs = [start({"db": db, "op": "index", "paths": [str(library)], "seed": seed * 10 + i, "pause": 0.3}) for i in range(2)]
    reports = [finish(p) for p in procs]
    done = sorted(reports[0]["indexed"] + reports[1]["indexed"])
    assert done == clean["videos"], "each video is indexed by exactly one of the writers"
    assert_same(state(Path(db)), clean)


def test_a_writer_between_its_scenes_and_its_video_row_loses_nothing(library, clean, tmp_path):
    """The second writer's clean-up of interrupted videos must not take the first one's scenes."""
    db, marker = str(tmp_path / "db"), tmp_path / "held"
    first = start({"db": db, "op": "index", "paths": [str(library / "v6.mp4")], "hold": [2, 3.0, str(marker)]})
    deadline = time.monotonic() + 120
    while not marker.exists():  # the first writer has committed v6's scenes, not yet its row
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    second = start({"db": db, "op": "index", "paths": [str(library)]})
    a, b = finish(first), finish(second)
    assert a["indexed"] == [str((library / "v6.mp4").resolve())]
    assert str((library / "v6.mp4").resolve()) in b["unchanged"]
    assert_same(state(Path(db)), clean)


def test_delete_while_another_process_indexes(library, clean, tmp_path):
    db = str(tmp_path / "db")
    finish(start({"db": db, "op": "index", "paths": [str(library / "v3.mp4")]}))
    others = [str(library / f"v{n}.mp4") for n in (4, 5, 6)]
    indexer = start({"db": db, "op": "index", "paths": others, "seed": 7, "pause": 0.3})
    deleter = start({"db": db, "op": "delete", "refs": [str(library / "v3.mp4")], "seed": 8, "pause": 0.3})
    finish(indexer), finish(deleter)
    got = state(Path(db))
    assert str((library / "v3.mp4").resolve()) not in got["videos"]
    assert got["videos"] == [v for v in clean["videos"] if not v.endswith("v3.mp4")]
    assert got["listed"] == got["videos"]
    finish(start({"db": db, "op": "index", "paths": [str(library)]}))  # put it back: the same store as a clean run
    assert_same(state(Path(db)), clean)


def test_an_indexer_beside_a_searching_process(library, clean, tmp_path):
    """Both processes keep the search files in step; the files they leave equal a clean build's."""
    db = str(tmp_path / "db")
    finish(start({"db": db, "op": "index", "paths": [str(library / "v4.mp4")]}))
    indexer = start({"db": db, "op": "index", "paths": [str(library)], "seed": 5, "pause": 0.4})
    while indexer.poll() is None:
        finish(start({"db": db, "op": "search", "queries": QUERIES}))
    finish(indexer)
    assert_same(state(Path(db)), clean)


def test_two_threads_index_one_folder(library, clean, tmp_path):
    db = str(tmp_path / "db")
    errors = []

    def run():
        try:
            engine(db).index([library])
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors
    assert_same(state(Path(db)), clean)
