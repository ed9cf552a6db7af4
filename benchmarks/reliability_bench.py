"""Reliability with the real CLI and the real shipped models (whisper tiny.en, MiniLM), on dev
videos: the long variants of the crash and concurrency tests (tests/test_crash.py,
tests/test_concurrency.py use test doubles and fewer moments).

    python benchmarks/reliability_bench.py [--kills 30] [--rounds 6] [--videos 3]

- crash: ``egorag index``, ``egorag delete`` and ``egorag index --reindex`` SIGKILLed at seeded
  moments spread over a clean run's wall time, then the same command run again; the store must
  then equal a clean run's (``Engine.check``: every row read and each video's scene count; the
  listing; top-10 hits and scores of the dev queries).
- concurrency: rounds of 2-3 ``egorag index`` processes on one folder started at seeded offsets,
  with a deleter or a searcher beside them in some rounds; every process must exit cleanly (no
  raw LanceDB error) and the store must equal a clean run's.

Prints and saves ``results/reliability_bench.json``: tried, handled, failures and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERE, save  # noqa: E402

import egorag  # noqa: E402

DEVSET = HERE / "data" / "devset"
QUERIES = [json.loads(line)["query"] for line in (DEVSET / "queries_test.jsonl").read_text().splitlines()[:12]]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "egorag.cli", *args]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=900)


def state(db: Path) -> dict:
    engine = egorag.Engine(db)
    report = engine.check()
    hits = [[(h.scene_id, round(h.score, 4)) for h in r.hits] for r in engine.search_many(QUERIES, k=10)]
    return {"ok": report.ok, "videos": sorted((v.path, v.n_scenes) for v in engine.videos()),
            "scenes": report.scenes, "hits": hits}


def same(got: dict, want: dict) -> str | None:
    for key in ("ok", "videos", "scenes", "hits"):
        if got[key] != want[key]:
            return f"{key} differs"
    return None


def kill_at(args: list[str], seconds: float) -> bool:
    proc = subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def crash(folder: Path, work: Path, clean: dict, clean_s: float, kills: int, rng: random.Random) -> dict:
    victim = str(sorted(folder.glob("*.mp4"))[0].resolve())
    tried = handled = killed = 0
    failures = []
    for i in range(kills):
        op = ("index", "delete", "reindex")[i % 3]
        db = work / f"crash{i}"
        if op != "index":
            shutil.copytree(work / "clean", db)
        args = {"index": ["index", str(folder), "--db", str(db), "--quiet"],
                "reindex": ["index", str(folder), "--db", str(db), "--quiet", "--reindex"],
                "delete": ["delete", victim, "--db", str(db)]}[op]
        at = rng.uniform(0.5, clean_s if op != "delete" else 8.0)
        killed += kill_at(args, at)
        rerun = run(*args)
        if op == "delete":  # then put the video back: the clean library again
            rerun = run("index", str(folder), "--db", str(db), "--quiet")
        tried += 1
        problem = f"exit {rerun.returncode}: {rerun.stderr.strip()[-300:]}" if rerun.returncode else same(state(db), clean)
        if problem:
            failures.append({"op": op, "at_s": round(at, 2), "problem": problem})
        else:
            handled += 1
        shutil.rmtree(db, ignore_errors=True)
        print(f"crash {i + 1}/{kills}: {op} killed at {at:.1f}s -> {problem or 'same as clean'}", flush=True)
    return {"tried": tried, "handled": handled, "killed_before_the_end": killed, "failures": failures}


def concurrency(folder: Path, work: Path, clean: dict, rounds: int, rng: random.Random) -> dict:
    tried = handled = 0
    failures = []
    for r in range(rounds):
        db = work / f"conc{r}"
        writers = 2 + r % 2
        procs = []
        for w in range(writers):
            time.sleep(rng.uniform(0, 3))
            procs.append(subprocess.Popen(cli("index", str(folder), "--db", str(db), "--quiet"), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True))
        searched = 0
        while r % 3 == 2 and any(p.poll() is None for p in procs) and searched < 50:
            if (db / "videos.lance").exists():
                out = run("search", QUERIES[searched % len(QUERIES)], "--db", str(db), "--json")
                if out.returncode != 0 and "no egorag store" not in out.stderr and "incomplete" not in out.stderr:
                    failures.append({"round": r, "problem": f"search: {out.stderr.strip()[-300:]}"})
            searched += 1
            time.sleep(0.5)
        errors = [p.communicate()[1] for p in procs if p.wait() != 0]
        tried += 1
        searches = [f for f in failures if f.get("round") == r]
        problem = f"writer failed: {errors[0].strip()[-300:]}" if errors else same(state(db), clean)
        problem = problem or (f"{len(searches)} search(es) failed" if searches else None)
        if problem:
            failures.append({"round": r, "writers": writers, "problem": problem})
        else:
            handled += 1
        shutil.rmtree(db, ignore_errors=True)
        print(f"concurrency {r + 1}/{rounds}: {writers} writers{' + searcher' if r % 3 == 2 else ''} -> {problem or 'same as clean'}",
              flush=True)
    return {"tried": tried, "handled": handled, "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="egorag-reliability-"))
    folder = work / "videos"
    folder.mkdir()
    for path in sorted(DEVSET.glob("*.mp4"))[: args.videos]:
        shutil.copy(path, folder / path.name)
    t0 = time.perf_counter()
    out = run("index", str(folder), "--db", str(work / "clean"), "--quiet")
    clean_s = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    clean = state(work / "clean")
    print(f"clean run: {clean_s:.1f}s, {len(clean['videos'])} videos, {clean['scenes']} scenes", flush=True)
    t0 = time.perf_counter()
    crashes = crash(folder, work, clean, clean_s, args.kills, rng)
    crash_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rounds = concurrency(folder, work, clean, args.rounds, rng)
    conc_s = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    result = {"videos": len(clean["videos"]), "scenes": clean["scenes"], "clean_run_s": round(clean_s, 1),
              "crash": {**crashes, "wall_s": round(crash_s, 1)}, "concurrency": {**rounds, "wall_s": round(conc_s, 1)}}
    print(json.dumps({k: v for k, v in result.items()}, indent=2))
    save("reliability_bench", result)


if __name__ == "__main__":
    main()
