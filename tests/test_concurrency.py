"""Two writers on one store are normal use: each video ends up indexed exactly once, nothing a
writer committed is lost, the listing equals the videos table, and the search files equal a
clean build's. Writers are real processes (and threads), interleaved by seeded pauses before
their LanceDB commits (tests/writer_proc.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from writer_proc import QUERIES, assert_same, engine, finish, start, state


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


def test_a_store_with_no_video_left_answers_nothing_in_a_fresh_process(library, tmp_path):
    """Its search files describe zero videos (as while a first video is being written, or after
    the last one is deleted): a reader answers no hits instead of failing."""
    db = str(tmp_path / "db")
    finish(start({"db": db, "op": "index", "paths": [str(library / "v6.mp4")]}))
    finish(start({"db": db, "op": "delete", "refs": [str(library / "v6.mp4")]}))
    assert finish(start({"db": db, "op": "search", "queries": QUERIES}))["hits"] == [[] for _ in QUERIES]
    assert engine(db).videos() == []
