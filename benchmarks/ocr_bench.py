"""What on-screen text (OCR) costs at ingest, side by side: the dev set's narrated videos and its
screen-only videos, each indexed with OCR off and on, each run in a fresh process.

    python benchmarks/ocr_bench.py

Models: whisper tiny.en, the default text encoder, RapidOCR (all real, shipped). Reported per
run: wall (model load apart), seconds of video per wall second, the decode pass's stage seconds
(where OCR runs) and the frames read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERE, save  # noqa: E402

DEVSET = HERE / "data" / "devset"
SCREEN = ["slides_quarterly", "terminal_session", "street_signs", "departures", "recipe_cards", "lecture_slides",
          "shop_labels", "museum_plaques"]


def child(db: str, ocr: bool, videos: list[str]) -> dict:
    import egorag
    from egorag.config import EngineConfig
    from egorag.models import load_models

    modalities = ("asr", "text") + (("ocr",) if ocr else ())
    config = EngineConfig(modalities=modalities)
    t0 = time.perf_counter()
    models = load_models(config, modalities)
    load_s = time.perf_counter() - t0
    reads = []
    if ocr:  # count the frames read
        inner = models.ocr.read

        def counted(image):
            reads.append(1)
            return inner(image)

        models.ocr.read = counted
    report = egorag.Engine(db, config, models=models).index([Path(v) for v in videos])
    encode = report.wall_seconds - report.stage_seconds.get("load_models", 0.0)
    return {"ocr": ocr, "model_load_seconds": load_s + report.stage_seconds.get("load_models", 0.0), "encode_wall_seconds": encode,
            "stage_seconds": report.stage_seconds, "scenes": report.scenes, "frames_read": len(reads)}


def main() -> None:
    from egorag.ingest.decode import find_videos, probe

    everything = find_videos([DEVSET])
    groups = {"screen": [v for v in everything if v.stem in SCREEN], "narrated": [v for v in everything if v.stem not in SCREEN]}
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, videos in groups.items():
            seconds = sum(probe(v).duration for v in videos)
            runs = {}
            for ocr in (False, True):
                command = [sys.executable, __file__, "--child", str(Path(tmp) / f"{name}_{ocr}"), "1" if ocr else "0", *map(str, videos)]
                out = subprocess.run(command, capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(out.stderr[-2000:])
                run = json.loads(out.stdout.strip().splitlines()[-1])
                run["x_realtime"] = seconds / run["encode_wall_seconds"]
                runs["ocr" if ocr else "no_ocr"] = run
                print(name, "OCR" if ocr else "no OCR", {k: v for k, v in run.items() if k != "stage_seconds"},
                      {k: round(v, 1) for k, v in run["stage_seconds"].items()}, flush=True)
            added = runs["ocr"]["encode_wall_seconds"] / runs["no_ocr"]["encode_wall_seconds"] - 1
            figures[name] = {"videos": len(videos), "video_seconds": seconds, "runs": runs, "ocr_adds": added}
            print(f"{name}: {len(videos)} videos, {seconds:.0f} s; OCR on: {runs['ocr']['x_realtime']:.1f}x real time, "
                  f"adds {100 * added:.0f} % to the encoding wall ({runs['ocr']['frames_read']} frames read)", flush=True)
    save("ocr_bench", figures)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        db, ocr, *videos = sys.argv[2:]
        print(json.dumps(child(db, ocr == "1", videos)))
    else:
        main()
