"""Fault harness: every file of a store's search snapshot (its manifest too), one at a time
truncated, zeroed, deleted or corrupted mid-file, is detected (a warning naming it) and the
snapshot rebuilt from the store:
searches answer what a clean store answers, never something else. Damage to LanceDB's own
files is reported by ``egorag check`` with what to do, and lost commits are said, not silent."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from writer_proc import QUERIES, engine

from egorag.errors import EgoragError

FAULTS = ("truncate", "zero", "delete", "corrupt")


@pytest.fixture(scope="module")
def pristine(library, tmp_path_factory) -> Path:
    """A store of the library, searched once."""
    db = tmp_path_factory.mktemp("pristine") / "db"
    e = engine(str(db))
    e.index([library])
    e.search_many(QUERIES, k=10)
    return db


def hits(db: Path) -> list:
    """Top-10 hits of a fresh engine (a new process would open the store the same way)."""
    return [[(h.scene_id, round(h.score, 4)) for h in r.hits] for r in engine(str(db)).search_many(QUERIES, k=10)]


def damage(path: Path, fault: str) -> None:
    data = path.read_bytes()
    if fault == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif fault == "zero":
        path.write_bytes(bytes(len(data)))
    elif fault == "delete":
        path.unlink()
    else:  # a few bytes changed in the middle, the size kept
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes(b ^ 0x5A for b in data[mid : mid + 8]) + data[mid + 8 :])


def search_files(db: Path) -> list[str]:
    """The newest snapshot's files, its manifest included."""
    from index.files import newest

    root = newest(db)[1]
    return sorted(p.relative_to(db).as_posix() for p in root.iterdir() if p.is_file() and not p.name.startswith("."))


def test_every_search_file_and_fault_is_caught(pristine, tmp_path, caplog):
    want = hits(pristine)
    files = search_files(pristine)
    assert len(files) >= 8 and any(f.endswith("manifest.json") for f in files), files
    tried = 0
    for name in files:
        for fault in FAULTS:
            db = tmp_path / f"{tried}"
            shutil.copytree(pristine, db, symlinks=True)
            os.utime(db / name, ns=((db / name).stat().st_atime_ns, (pristine / name).stat().st_mtime_ns))
            damage(db / name, fault)
            caplog.clear()
            with caplog.at_level(logging.WARNING, "egorag"):
                got = hits(db)
                listed = [v.path for v in engine(str(db)).videos()]
            assert got == want, f"{name} {fault}: a different answer"
            assert listed == sorted(listed) and len(listed) == 4, f"{name} {fault}: listing"
            assert Path(name).name in caplog.text, f"{name} {fault}: not said"
            tried += 1
    assert tried == len(files) * len(FAULTS)


def test_bit_rot_that_keeps_size_and_time_is_caught_by_check(pristine, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(pristine, db)
    path = db / search_files(db)[0].rpartition("/")[0] / "text.f32"
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the file looks untouched
    report = engine(str(db)).check()
    assert report.ok and any("text.f32" in line for line in report.repaired)
    assert hits(db) == hits(pristine)
    again = engine(str(db)).check()
    assert again.ok and not again.repaired and again.search_files >= 7 and again.videos == 4


def test_a_lost_lance_commit_is_said_not_silent(pristine, tmp_path, caplog):
    """Deleting the newest manifest of the videos table takes the last video's row with it; the
    search files knew it, so the loss is said and the video named."""
    db = tmp_path / "db"
    shutil.copytree(pristine, db)
    versions = db / "videos.lance" / "_versions"
    newest = sorted(versions.glob("*.manifest"), key=lambda p: int(p.stem))[0]  # inverted names: the smallest is the newest
    newest.unlink()
    (versions / "latest_version_hint.json").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, "egorag"):
        listed = engine(str(db)).videos()
        engine(str(db)).search("rings of saturn", k=3)
    assert len(listed) == 3
    assert "went back to an older version" in caplog.text and "not in the store" in caplog.text and "index them again" in caplog.text


def test_damaged_lance_files_are_a_clear_error_with_the_recovery(pristine, tmp_path):
    from egorag.cli import main

    db = tmp_path / "db"
    shutil.copytree(pristine, db)
    for data in (db / "scenes.lance" / "data").glob("*.lance"):
        damage(data, "zero")
    report = engine(str(db)).check()
    assert not report.ok and "LanceDB cannot read" in report.problems[0] and "restore" in report.problems[0]
    assert main(["check", "--db", str(db)]) == 1
    # what reads the damaged rows says so: a scene's record, and a snapshot rebuilt from the tables
    with pytest.raises(EgoragError, match="LanceDB cannot read the store.*egorag check"):
        engine(str(db)).scene(hits(pristine)[0][0][0])
    shutil.rmtree(db / "snapshots")
    with pytest.raises(EgoragError, match="LanceDB cannot read the store.*egorag check"):
        engine(str(db)).search("rings of saturn", k=3)
