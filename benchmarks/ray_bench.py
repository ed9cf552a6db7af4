"""Indexing on Ray against the single-process path, on the same videos, in one run.

    python benchmarks/ray_bench.py [--videos DIR] [--copies N]

Models: the offline default (whisper tiny.en, MiniLM, RapidOCR; real, shipped). Side by side:
- the single-process path (``Engine.index``), models loaded in the run;
- Ray on a local cluster (``ray.init(num_cpus=2)``) with at most 1 and at most 2 actors per stage.
Each run indexes into a new store; the figures are wall seconds (cluster start excluded, actor
start-up and model loading included), video seconds per wall second, and the single-process
run's per-stage seconds, from which RESULTS.md derives the plan for N GPU nodes. ``--copies``
re-encodes each video N times (different content hashes) to give the cluster more to do.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERE, save  # noqa: E402

import egorag  # noqa: E402
from egorag.cluster import RayOptions  # noqa: E402

DEVSET = HERE / "data" / "devset"


def copies_of(videos: list[Path], n: int, folder: Path) -> list[Path]:
    """Each video, and n-1 copies with one byte of padding more each (new content hashes)."""
    out = []
    for video in videos:
        data = video.read_bytes()
        for i in range(n):
            path = folder / f"{video.stem}_{i}.mp4"
            path.write_bytes(data + b"\0" * i)  # trailing bytes after the last box: players ignore them
            out.append(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", default=str(DEVSET))
    parser.add_argument("--copies", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="egorag-ray-"))
    videos = copies_of(sorted(Path(args.videos).glob("*.mp4")), args.copies, work)
    figures: dict = {"videos": len(videos), "cpus": os.cpu_count()}

    t0 = time.perf_counter()
    report = egorag.Engine(work / "single").index(videos)
    wall = time.perf_counter() - t0
    figures["single_process"] = {"wall_s": wall, "video_s": report.video_seconds, "x_real_time": report.video_seconds / wall,
                                 "stage_seconds": report.stage_seconds, "scenes": report.scenes}
    print(f"single process: {wall:.1f} s for {report.video_seconds:.0f} s of video ({report.video_seconds / wall:.1f}x), "
          f"stages {({k: round(v, 1) for k, v in report.stage_seconds.items()})}", flush=True)

    import ray

    ray.init(num_cpus=2, logging_level="ERROR", log_to_driver=False)
    try:
        for workers in (1, 2):
            db = work / f"ray{workers}"
            t0 = time.perf_counter()
            report = egorag.Engine(db).index(videos, ray=RayOptions(workers=workers))
            wall = time.perf_counter() - t0
            same = sorted(v.video_id for v in egorag.Engine(db).videos()) == sorted(v.video_id for v in egorag.Engine(work / "single").videos())
            figures[f"ray_{workers}_workers"] = {"wall_s": wall, "x_real_time": report.video_seconds / wall, "scenes": report.scenes,
                                                 "same_videos": same}
            print(f"ray, {workers} worker(s) per stage: {wall:.1f} s ({report.video_seconds / wall:.1f}x), scenes {report.scenes}, "
                  f"same videos {same}", flush=True)
    finally:
        ray.shutdown()
    save("ray_bench", figures)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
