"""Peak RSS while indexing must not grow with video length (streaming decode; frames are embedded
as they arrive and only vectors and thumbnails are kept). Indexes synthetic videos of increasing
length, each in a fresh process, with the visual stage on (ViT-B-32 with RANDOM weights: memory and
compute do not depend on the weight values) and reports each peak RSS.

    python benchmarks/memory_bench.py [--minutes 4 16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_long_video(path: Path, minutes: float, fps: int = 5, cut_every_s: float = 15.0) -> Path:
    import av
    import numpy as np

    n = int(minutes * 60 * fps)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        colour = rng.integers(0, 255, 3)
        for i in range(n):
            if i % int(cut_every_s * fps) == 0:
                colour = rng.integers(0, 255, 3)
            img = np.empty((96, 160, 3), np.uint8)
            img[:] = colour
            img[30:60, (i * 3) % 130 : (i * 3) % 130 + 30] = 255 - colour
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def child(video: str) -> None:
    import open_clip

    import egorag
    from egorag.config import EngineConfig
    from egorag.encoders.clip import OpenClipEncoder
    from egorag.models import load_models

    config = EngineConfig(modalities=("asr", "text"))
    models = load_models(config, ("asr", "text"))
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    models.visual = OpenClipEncoder.from_model(model, preprocess, open_clip.get_tokenizer("ViT-B-32"), "ViT-B-32:RANDOM-timing-only")
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        report = egorag.Engine(Path(tmp) / "db", config, models=models).index([video])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"video_s": report.video_seconds, "scenes": report.scenes, "wall_s": time.perf_counter() - t0,
                      "rss_after_model_load_mb": loaded_rss, "peak_rss_mb": peak, "growth_mb": peak - loaded_rss}))


def main() -> None:
    from common import save

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, nargs="+", default=[4, 16])
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            video = make_long_video(Path(tmp) / f"long_{minutes}.mp4", minutes)
            out = subprocess.run([sys.executable, __file__, "--child", str(video)], capture_output=True, text=True, check=True)
            rows[f"{minutes:g}_min"] = json.loads(out.stdout.strip().splitlines()[-1])
            print(minutes, rows[f"{minutes:g}_min"], flush=True)
    save("memory_bench", {"runs": rows})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
