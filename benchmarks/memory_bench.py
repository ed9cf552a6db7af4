"""Peak RSS while indexing must not grow with video length (streaming decode; frames are embedded
as they arrive and only vectors and thumbnails are kept; the audio is decoded and transcribed in
windows). Indexes synthetic videos of increasing length, each in a fresh process, with the visual
stage on (ViT-B-32 with RANDOM weights: memory and compute do not depend on the weight values)
and real speech on the audio track (the shipped sample's narration, looped: whisper tiny.en
transcribes all of it), and reports each peak RSS.

    python benchmarks/memory_bench.py [--minutes 4 16 60]
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


def make_long_video(path: Path, minutes: float, speech, fps: int = 5, cut_every_s: float = 15.0, rate: int = 16000) -> Path:
    """A video of ``minutes`` with a cut every ``cut_every_s`` and ``speech`` (16 kHz mono
    float32) looped on its audio track."""
    import av
    import numpy as np

    n = int(minutes * 60 * fps)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        a = c.add_stream("aac", rate=rate, layout="mono")
        colour = rng.integers(0, 255, 3)
        sent = 0  # audio samples written, interleaved with the frames
        for i in range(n):
            if i % int(cut_every_s * fps) == 0:
                colour = rng.integers(0, 255, 3)
            img = np.empty((96, 160, 3), np.uint8)
            img[:] = colour
            img[30:60, (i * 3) % 130 : (i * 3) % 130 + 30] = 255 - colour
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
            while sent < (i + 1) * rate // fps:
                chunk = np.take(speech, np.arange(sent, sent + 1024), mode="wrap").astype(np.float32)
                audio = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                audio.sample_rate, audio.pts = rate, sent
                c.mux(a.encode(audio))
                sent += 1024
        c.mux(s.encode(None))
        c.mux(a.encode(None))
    return path


def child(video: str, window_s: float) -> None:
    import open_clip

    import egorag
    from egorag.config import AsrConfig, EngineConfig
    from egorag.encoders.clip import OpenClipEncoder
    from egorag.models import load_models

    config = EngineConfig(modalities=("asr", "text"), asr=AsrConfig(window_s=window_s))
    models = load_models(config, ("asr", "text"))
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    models.visual = OpenClipEncoder.from_model(model, preprocess, open_clip.get_tokenizer("ViT-B-32"), "ViT-B-32:RANDOM-timing-only")
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        engine = egorag.Engine(Path(tmp) / "db", config, models=models)
        report = engine.index([video])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        words = sum(len(s.transcript.split()) for s in engine.store().scenes_of(engine.videos()[0].video_id))
    print(json.dumps({"video_s": report.video_seconds, "scenes": report.scenes, "words": words, "asr_window_s": window_s,
                      "wall_s": time.perf_counter() - t0, "rss_after_model_load_mb": loaded_rss, "peak_rss_mb": peak,
                      "growth_mb": peak - loaded_rss}))


def main() -> None:
    from common import save

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, nargs="+", default=[4, 16, 60])
    parser.add_argument("--one-window-too", action="store_true",
                        help="also transcribe each track in one window (as before windows), side by side")
    args = parser.parse_args()
    from common import HERE

    from egorag.config import AsrConfig
    from egorag.ingest.decode import decode_audio

    speech = decode_audio(HERE / "data" / "sample.mp4", 16000)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            video = make_long_video(Path(tmp) / f"long_{minutes}.mp4", minutes, speech)
            for name, window_s in [("", AsrConfig.window_s)] + ([("_one_window", 1e9)] if args.one_window_too else []):
                out = subprocess.run([sys.executable, __file__, "--child", str(video), str(window_s)], capture_output=True, text=True, check=True)
                rows[f"{minutes:g}_min{name}"] = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{minutes:g}_min{name}", rows[f"{minutes:g}_min{name}"], flush=True)
    save("memory_bench", {"runs": rows})


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], float(sys.argv[3]))
    else:
        main()
