"""One writer process for the concurrency and crash tests: index, delete or search a store with
the test doubles (hash text encoder, a transcript chosen by the audio's length).

``python tests/writer_proc.py '<json>'`` with ``db``, ``op`` ("index", "delete", "search"),
``paths`` / ``refs`` / ``queries``, and optional pauses before LanceDB commits: ``seed`` and
``pause`` (a seeded random pause of up to ``pause`` seconds before each commit), or ``hold``
(``[commit number, seconds, marker file]``: before that commit, touch the marker and wait), so
that tests interleave writers deterministically. Prints one JSON object: what the op did."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import HashEncoder, words_at  # noqa: E402  (registers the "test-hash" encoder)

from egorag.config import EngineConfig, TextConfig  # noqa: E402
from egorag.engine import Engine  # noqa: E402
from egorag.models import ModelSet  # noqa: E402

#: Each test video's transcript, by its audio's length in whole seconds.
SCRIPTS = {
    3: words_at("volcano lava eruption magma crater", 0.1, 2.9),
    4: words_at("bread dough flour oven yeast", 0.1, 1.9) + words_at("honey bees hive queen wax", 2.1, 3.9),
    5: words_at("saturn rings planet moons orbit", 0.1, 2.4) + words_at("piano keys melody concert", 2.6, 4.9),
    6: words_at("glacier ice melting arctic", 0.1, 2.9) + words_at("desert dunes camel sand", 3.1, 5.9),
}


class ScriptByLength:
    """Test double for ASR: the words of :data:`SCRIPTS` for the audio's length."""

    model_name = "scripted-by-length"

    def transcribe(self, audio):
        return list(SCRIPTS.get(round(len(audio) / 16000), []))


def config() -> EngineConfig:
    return EngineConfig(text=TextConfig(encoder="test-hash", model="hash-64"))


def engine(db: str) -> Engine:
    return Engine(db, config(), models=ModelSet(transcriber=ScriptByLength(), text=HashEncoder(dim=64)))


def loader(components: tuple[str, ...]) -> ModelSet:
    """The test doubles of :func:`engine` for the ``components`` a Ray worker asks for."""
    return ModelSet(transcriber=ScriptByLength() if "asr" in components else None,
                    text=HashEncoder(dim=64) if "text" in components else None)


class DiesOnce(HashEncoder):
    """:class:`HashEncoder` whose process dies at its first encode while ``marker`` is absent
    (it creates it first): the worker killed mid-video in the Ray tests."""

    def __init__(self, marker: str, **kwargs):
        super().__init__(**kwargs)
        self.marker = Path(marker)

    def encode_documents(self, items):
        if not self.marker.exists():
            self.marker.touch()
            import os

            os._exit(1)
        return super().encode_documents(items)


def dying_loader(marker: str, components: tuple[str, ...]) -> ModelSet:
    """:func:`loader`, but the text encoder kills its worker once (see :class:`DiesOnce`)."""
    return ModelSet(transcriber=ScriptByLength() if "asr" in components else None,
                    text=DiesOnce(marker, dim=64) if "text" in components else None)


def pause_commits(seed: int | None, pause: float, hold: list | None) -> None:
    import index.lance as lance
    from index.lance import COMMIT_ATTEMPTS

    real = lance._commit
    rng = random.Random(seed)
    count = [0]

    def paused(uri, action, attempts=COMMIT_ATTEMPTS):
        if hold is not None and count[0] == hold[0]:
            Path(hold[2]).touch()
            time.sleep(hold[1])
        elif pause:
            time.sleep(rng.random() * pause)
        count[0] += 1
        return real(uri, action, attempts)

    lance._commit = paused


def main(spec: dict) -> dict:
    pause_commits(spec.get("seed"), spec.get("pause", 0.0), spec.get("hold"))
    e = engine(spec["db"])
    if spec["op"] == "index":
        report = e.index(spec["paths"], reindex=spec.get("reindex", False))
        return {"indexed": report.indexed, "replaced": report.replaced, "unchanged": report.unchanged}
    if spec["op"] == "delete":
        return {"deleted": [v.video_id for v in e.delete(spec["refs"])]}
    if spec["op"] == "search":
        return {"hits": [[[h.scene_id, h.score] for h in e.search(q, k=10).hits] for q in spec["queries"]]}
    raise ValueError(f"unknown op {spec['op']!r}")


# -- the harness the tests drive these processes with ------------------------------------------

HELPER = Path(__file__).resolve()
QUERIES = ["lava from a volcano", "a hive of honey bees", "rings of saturn", "melting glacier ice", "bread in the oven"]


def make_library(folder: Path) -> Path:
    """Four short videos (3-6 s, distinct transcripts by length) in ``folder``."""
    from conftest import make_video

    for seconds, cuts in ((3, [40]), (4, [50]), (5, [60]), (6, [70, 110])):
        make_video(folder / f"v{seconds}.mp4", cuts, 25 * seconds, audio_seconds=float(seconds), seed=seconds)
    return folder


def start(spec: dict):
    import subprocess

    return subprocess.Popen([sys.executable, str(HELPER), json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout: float = 180) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def state(db: Path) -> dict:
    """The store as LanceDB holds it (videos, scene rows, their text vectors), as ``egorag
    videos`` lists it, and the top 10 hits of :data:`QUERIES` from a fresh process."""
    import numpy as np

    from index.lance import LanceSceneStore

    store = LanceSceneStore(db)
    table = store._videos.to_arrow()
    scenes = store._scenes.to_arrow()
    keys = list(zip(scenes.column("video_path").to_pylist(), scenes.column("scene_index").to_pylist()))
    vectors = scenes.column("text_vec").to_pylist()
    listed = finish(start({"db": str(db), "op": "search", "queries": QUERIES}))
    return {
        "videos": sorted(table.column("path").to_pylist()),
        "scene_rows": sorted(keys),
        "vectors": {k: np.asarray(v if v is not None else [], np.float32) for k, v in zip(keys, vectors)},
        "listed": sorted(v.path for v in engine(str(db)).videos()),
        "hits": listed["hits"],
    }


def assert_same(got: dict, want: dict) -> None:
    import numpy as np
    import pytest

    assert got["videos"] == want["videos"], "every video exactly once"
    assert got["scene_rows"] == want["scene_rows"], "every scene row exactly once"
    for key, vector in want["vectors"].items():
        np.testing.assert_allclose(got["vectors"][key], vector, atol=1e-6)
    assert got["listed"] == got["videos"], "egorag videos lists the videos table"
    for mine, theirs in zip(got["hits"], want["hits"], strict=True):
        assert [h[0] for h in mine] == [h[0] for h in theirs]
        assert [h[1] for h in mine] == pytest.approx([h[1] for h in theirs], abs=1e-4)


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
