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


def pause_commits(seed: int | None, pause: float, hold: list | None) -> None:
    import index.lance as lance

    real = lance._commit
    rng = random.Random(seed)
    count = [0]

    def paused(action, attempts=lance.COMMIT_ATTEMPTS):
        if hold is not None and count[0] == hold[0]:
            Path(hold[2]).touch()
            time.sleep(hold[1])
        elif pause:
            time.sleep(rng.random() * pause)
        count[0] += 1
        return real(action, attempts)

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
        return {"hits": [[[h.scene_id, h.score] for h in e.search(q, k=5).hits] for q in spec["queries"]]}
    raise ValueError(f"unknown op {spec['op']!r}")


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
