"""Indexing on a local Ray cluster (``ray.init(num_cpus=2)``): the same videos, scenes and vectors
as the single-process path; a worker killed mid-video still ends in a complete store; a rerun
skips finished videos; bad media follows the policy; the CLI's ``--ray`` reaches the engine."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest
from writer_proc import assert_same, dying_loader, engine, loader, state

from egorag.cluster import RayOptions

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster():
    import ray

    ray.init(num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}}, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_indexes_what_one_process_does(cluster, library, clean, tmp_path):
    db = tmp_path / "db"
    report = engine(str(db)).index([library], ray=RayOptions(loader=loader, commit_every=3))
    assert sorted(report.indexed) == sorted(str(p) for p in library.glob("*.mp4")) and not report.failed
    assert report.scenes == len(clean["scene_rows"]) and report.video_seconds == pytest.approx(18.0, abs=0.5)
    assert_same(state(db), clean)
    again = engine(str(db)).index([library], ray=RayOptions(loader=loader))  # finished videos are skipped
    assert len(again.unchanged) == 4 and not again.indexed


def test_a_worker_killed_mid_video_still_ends_complete(cluster, library, clean, tmp_path):
    marker = tmp_path / "died"
    db = tmp_path / "db"
    report = engine(str(db)).index([library], ray=RayOptions(loader=functools.partial(dying_loader, str(marker))))
    assert marker.exists(), "the encoder's worker was killed"
    assert len(report.indexed) == 4 and not report.failed
    assert_same(state(db), clean)


def test_bad_media_follows_the_policy(cluster, library, tmp_path):
    from egorag.errors import MediaError

    folder = tmp_path / "media"
    shutil.copytree(library, folder)
    bad = folder / "broken.mp4"
    bad.write_bytes((library / "v3.mp4").read_bytes()[:3000])  # a header, then nothing
    db = tmp_path / "db"
    report = engine(str(db)).index([folder], ray=RayOptions(loader=loader), on_bad_media="skip")
    assert [p for p, _ in report.failed] == [str(bad)] and len(report.indexed) == 4
    assert len(engine(str(db)).videos()) == 4
    with pytest.raises(MediaError, match="broken.mp4"):
        engine(str(tmp_path / "db2")).index([folder], ray=RayOptions(loader=loader), on_bad_media="error")


def test_the_cli_passes_ray_on(monkeypatch, tmp_path, library):
    from egorag import cli
    from egorag.engine import Engine
    from egorag.reports import IndexReport

    seen = []
    monkeypatch.setattr(Engine, "index", lambda self, paths, **kw: seen.append(kw.get("ray")) or IndexReport())
    cli.main(["index", str(library), "--db", str(tmp_path / "db"), "--ray"])
    cli.main(["index", str(library), "--db", str(tmp_path / "db"), "--ray", "ray://head:10001"])
    cli.main(["index", str(library), "--db", str(tmp_path / "db")])
    assert seen == [True, "ray://head:10001", None]


@pytest.mark.slow
def test_ray_with_the_real_models_matches_one_process_on_dev_videos(cluster, tmp_path):
    """The shipped models (whisper tiny.en, MiniLM, RapidOCR) on two dev-set videos: Ray's store
    holds the same scenes, transcripts, screen text and vectors as the single-process one."""
    import numpy as np

    from egorag.engine import Engine
    from index.lance import LanceSceneStore

    devset = TESTS.parent / "benchmarks" / "data" / "devset"
    videos = [devset / "travel.mp4", devset / "space.mp4"]
    Engine(tmp_path / "one").index(videos)
    report = Engine(tmp_path / "ray").index(videos, ray=True)
    assert len(report.indexed) == 2 and not report.failed

    def rows(db):
        store = LanceSceneStore(db)
        out = {}
        for video in store.videos():
            for s in store.scenes_of(video.video_id, with_vectors=True):
                out[(Path(s.video_path).name, s.scene_index)] = s
        return out

    one, ray = rows(tmp_path / "one"), rows(tmp_path / "ray")
    assert sorted(one) == sorted(ray) and len(one) >= 6
    for key, a in one.items():
        b = ray[key]
        assert (a.start, a.end, a.transcript, a.screen_text) == (b.start, b.end, b.transcript, b.screen_text), key
        np.testing.assert_allclose(a.vectors["text"], b.vectors["text"], atol=1e-4)
