"""Crash harness: a writer SIGKILLed at seeded moments of ``index``, ``delete`` and
``--reindex`` (held just before one of its LanceDB commits, or at a seeded time into the run,
when it may be decoding, encoding or writing search files), then the same command run again,
must leave the store a clean run leaves: the same videos, scene rows and vectors, the same
listing, the same top-10 hits and scores. ``benchmarks/crash_bench.py`` runs many more."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from writer_proc import assert_same, engine, finish, start, state

pytestmark = pytest.mark.slow


def kill_during(spec: dict, moment: tuple[str, float], tmp_path: Path) -> bool:
    """Run ``spec`` and SIGKILL it at ``moment``: ("commit", n) just before its n-th commit,
    or ("time", seconds) into the run. Returns whether it was killed (it may finish first)."""
    kind, at = moment
    marker = tmp_path / f"held-{random.random()}"
    if kind == "commit":
        spec = {**spec, "hold": [int(at), 120.0, str(marker)]}
    proc = start(spec)
    deadline = time.monotonic() + 120
    while proc.poll() is None:
        if (kind == "commit" and marker.exists()) or (kind == "time" and time.monotonic() > deadline - 120 + at):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return False


MOMENTS = [("commit", n) for n in (0, 1, 2, 4, 5, 8, 11, 12, 13)] + [("time", t) for t in (2.0, 3.5, 5.0)]


@pytest.mark.parametrize("moment", MOMENTS, ids=[f"{k}-{v}" for k, v in MOMENTS])
def test_index_killed_then_rerun_equals_a_clean_run(library, clean, tmp_path, moment):
    db = str(tmp_path / "db")
    spec = {"db": db, "op": "index", "paths": [str(library)]}
    killed = kill_during(spec, moment, tmp_path)
    assert killed or moment[0] == "time"
    finish(start(spec))
    assert_same(state(Path(db)), clean)


@pytest.mark.parametrize("moment", [("commit", n) for n in (0, 1)] + [("time", 1.0), ("time", 2.5)])
def test_delete_killed_then_rerun_equals_a_clean_run(library, clean, tmp_path, moment):
    db = str(tmp_path / "db")
    engine(db).index([library])
    victim = str((library / "v5.mp4").resolve())
    killed = kill_during({"db": db, "op": "delete", "refs": [victim]}, moment, tmp_path)
    assert killed or moment[0] == "time"
    if victim in [v.path for v in engine(db).videos()]:
        finish(start({"db": db, "op": "delete", "refs": [victim]}))
    finish(start({"db": db, "op": "index", "paths": [str(library)]}))  # back to the clean library
    assert_same(state(Path(db)), clean)


@pytest.mark.parametrize("moment", [("commit", n) for n in (1, 3, 6, 9)] + [("time", 3.0)])
def test_reindex_killed_then_rerun_equals_a_clean_run(library, clean, tmp_path, moment):
    db = str(tmp_path / "db")
    engine(db).index([library])
    spec = {"db": db, "op": "index", "paths": [str(library)], "reindex": True}
    killed = kill_during(spec, moment, tmp_path)
    assert killed or moment[0] == "time"
    finish(start(spec))
    assert_same(state(Path(db)), clean)
