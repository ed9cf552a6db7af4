"""Ingest speed on the dev corpus: seconds of video per wall second, per stage, against the floors
(decode only; the models' own compute on the same input) and a naive per-scene pipeline.

    python benchmarks/ingest_bench.py [--visual-timing-only]

Models: whisper tiny.en and MiniLM (real, shipped). With --visual-timing-only, ViT-B-32 is built
with RANDOM weights to time the visual stage (compute does not depend on the weight values); its
vectors are meaningless and the store is thrown away. Never use that for retrieval.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import av  # noqa: E402
import numpy as np  # noqa: E402
from common import HERE, save  # noqa: E402

import egorag  # noqa: E402
from egorag.config import EngineConfig, VisualConfig  # noqa: E402
from egorag.ingest.decode import decode_audio, decode_frames, find_videos, probe  # noqa: E402
from egorag.ingest.frames import frame_to_square  # noqa: E402
from egorag.models import load_models  # noqa: E402

DEVSET = HERE / "data" / "devset"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Null:
    def consume(self, index, time, frame):
        pass


def decode_floor(videos) -> float:
    """Decode every frame and the audio once, doing nothing else."""
    t0 = time.perf_counter()
    for v in videos:
        decode_frames(v, probe(v), [_Null()])
        decode_audio(v, 16000)
    return time.perf_counter() - t0


def random_vit_b32():
    import open_clip

    from egorag.encoders.clip import OpenClipEncoder

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    return OpenClipEncoder.from_model(model, preprocess, open_clip.get_tokenizer("ViT-B-32"), "ViT-B-32:RANDOM-timing-only")


def model_floor(videos, models, store) -> dict[str, float]:
    """The models' own compute on the exact inputs the pipeline gave them."""
    out = {}
    audio = [decode_audio(v, 16000) for v in videos]
    t0 = time.perf_counter()
    for a in audio:
        models.transcriber.transcribe(a)
    out["asr"] = time.perf_counter() - t0
    texts = [s.transcript for v in store.videos() for s in store.scenes_of(v.video_id) if s.transcript]
    t0 = time.perf_counter()
    models.text.encode_documents(texts)
    out["text"] = time.perf_counter() - t0
    if models.visual is not None:
        frames = []
        for v in videos:
            with av.open(str(v)) as c:
                step = c.streams.video[0].average_rate
                for i, f in enumerate(c.decode(video=0)):
                    if i % int(step) == 0:
                        frames.append(frame_to_square(f, models.visual.image_size))
        t0 = time.perf_counter()
        for b in range(0, len(frames), 64):
            models.visual.encode_frames(np.stack(frames[b : b + 64]))
        out["visual"] = time.perf_counter() - t0
    return out


def naive_pipeline(videos, models, scenes_by_video) -> float:
    """The seed design: re-encode each scene to a temporary clip, then decode and encode it."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for v in videos:
            for k, (start, end) in enumerate(scenes_by_video[str(v.resolve())]):
                clip = Path(tmp) / f"{v.stem}_{k}.mp4"
                with av.open(str(v)) as src, av.open(str(v)) as src_audio, av.open(str(clip), "w") as dst:
                    vs = dst.add_stream("libx264", rate=src.streams.video[0].average_rate)
                    vs.width, vs.height, vs.pix_fmt = src.streams.video[0].width, src.streams.video[0].height, "yuv420p"
                    a_s = dst.add_stream("aac", rate=16000, layout="mono")
                    resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000)
                    for frame in src.decode(video=0):
                        if start <= frame.time < end:
                            frame.pts = None
                            dst.mux(vs.encode(frame))
                    dst.mux(vs.encode(None))
                    for frame in src_audio.decode(audio=0):
                        if start <= frame.time < end:
                            for out in resampler.resample(frame):
                                out.pts = None
                                dst.mux(a_s.encode(out))
                    dst.mux(a_s.encode(None))
                audio = decode_audio(clip, 16000)
                words = models.transcriber.transcribe(audio)
                models.text.encode_documents(["".join(w.text for w in words) or " "])
                if models.visual is not None:
                    with av.open(str(clip)) as c:
                        frames = [frame_to_square(f, models.visual.image_size) for i, f in enumerate(c.decode(video=0)) if i % 10 == 0]
                    if frames:
                        models.visual.encode_frames(np.stack(frames))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visual-timing-only", action="store_true", help="time the visual stage with random-weight ViT-B-32")
    args = parser.parse_args()
    videos = find_videos([DEVSET])
    video_s = sum(probe(v).duration for v in videos)
    config = EngineConfig(modalities=("asr", "text"), visual=VisualConfig(fps=1.0))
    t0 = time.perf_counter()
    models = load_models(config, ("asr", "text"))
    load_s = time.perf_counter() - t0
    if args.visual_timing_only:
        models.visual = random_vit_b32()
    floor_decode = decode_floor(videos)
    with tempfile.TemporaryDirectory() as tmp:
        engine = egorag.Engine(Path(tmp) / "db", config, models=models)
        report = engine.index(videos)
        wall = report.wall_seconds
        floors = model_floor(videos, models, engine.store())
        spans = {v.path: [(s.start, s.end) for s in engine.store().scenes_of(v.video_id)] for v in engine.videos()}
    naive = naive_pipeline(videos, models, spans)
    compute = sum(floors.values())
    figures = {
        "videos": len(videos),
        "video_seconds": video_s,
        "model_load_seconds": load_s,
        "wall_seconds": wall,
        "encode_wall_seconds": wall - report.stage_seconds.get("load_models", 0.0),  # the run, less its model loading
        "x_realtime": video_s / wall,
        "stage_seconds": report.stage_seconds,
        "decode_floor_seconds": floor_decode,
        "model_compute_seconds": floors,
        "wall_over_model_compute": (wall - report.stage_seconds.get("load_models", 0.0)) / compute,
        "naive_seconds": naive,
        "naive_over_egorag": naive / wall,
        "peak_rss_mb": peak_rss_mb(),
        "visual": "ViT-B-32 RANDOM weights (timing only)" if args.visual_timing_only else "off",
    }
    for k, v in figures.items():
        print(f"{k:24s} {v}")
    save("ingest_bench" + ("_visual" if args.visual_timing_only else ""), figures)


if __name__ == "__main__":
    main()
