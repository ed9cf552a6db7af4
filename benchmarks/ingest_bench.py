"""Ingest speed: seconds of video per wall second, per stage, against the floors (decode only;
the models' own compute on the same input, one call at a time) and a naive per-scene pipeline,
with ``[ingest] workers`` = 1 (one video at a time, speech recognition on one thread beside the
decode pass) and more, side by side.

    python benchmarks/ingest_bench.py [--visual-timing-only] [--workers 1 2] [--long-minutes 10]

Two workloads: the dev set's first 6 short narrated videos (339 s) and one long video (the shipped sample's
narration looped, a cut every 15 s). Each configuration runs in a fresh process, so its model
load and peak memory are its own. Models: whisper tiny.en and MiniLM (real, shipped). With
--visual-timing-only, ViT-B-32 is built with RANDOM weights to time the visual stage (compute
does not depend on the weight values); its vectors are meaningless and the store is thrown away.
Never use that for retrieval.
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

import av  # noqa: E402
import numpy as np  # noqa: E402
from common import HERE, save  # noqa: E402

import egorag  # noqa: E402
from egorag.config import (  # noqa: E402
    AsrConfig,
    EngineConfig,
    IngestConfig,
    TextConfig,
    VisualConfig,
)
from egorag.ingest.decode import decode_audio, decode_frames, find_videos, probe  # noqa: E402
from egorag.ingest.frames import frame_to_square  # noqa: E402
from egorag.models import load_models  # noqa: E402

DEVSET = HERE / "data" / "devset"
FIRST_SIX = ("nature", "kitchen", "space", "hobbies", "home", "travel")  # the dev set's first videos: 339 s of narration
ASR_MODEL = os.environ.get("EGORAG_BENCH_ASR", AsrConfig.model)  # the child processes get the parent's choice


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


def child(videos: list[Path], db: Path, workers: int, visual: bool) -> dict:
    """Index ``videos`` into ``db`` in this process; its figures."""
    config = EngineConfig(modalities=("asr", "text"), visual=VisualConfig(fps=1.0), ingest=IngestConfig(workers=workers),
                          asr=AsrConfig(model=ASR_MODEL))
    t0 = time.perf_counter()
    models = load_models(config, ("asr", "text"))
    if visual:
        models.visual = random_vit_b32()
    load_s = time.perf_counter() - t0
    report = egorag.Engine(db, config, models=models).index(videos)
    encode_wall = report.wall_seconds - report.stage_seconds.get("load_models", 0.0)
    return {"workers": workers, "model_load_seconds": load_s + report.stage_seconds.get("load_models", 0.0),
            "wall_seconds": report.wall_seconds, "encode_wall_seconds": encode_wall,
            "stage_seconds": report.stage_seconds, "peak_rss_mb": peak_rss_mb()}


def serial_floor(videos, db: Path, visual: bool) -> dict[str, float]:
    """The models' own compute, one call at a time, on the inputs the pipeline gave them: each
    audio window as the pipeline cut it, the scene texts of the store in ``db``."""
    from egorag.asr import OVERLAP_S, SAMPLE_RATE
    from egorag.config import AsrConfig
    from egorag.ingest.decode import decode_audio_windows

    config = EngineConfig(modalities=("asr", "text"), ingest=IngestConfig(workers=1), asr=AsrConfig(model=ASR_MODEL))
    models = load_models(config, ("asr", "text"))
    if visual:
        models.visual = random_vit_b32()
    out = {}
    windows = [a for v in videos for _, a in decode_audio_windows(v, SAMPLE_RATE, AsrConfig.window_s, OVERLAP_S)]
    t0 = time.perf_counter()
    for a in windows:
        models.transcriber.transcribe(a)
    out["asr"] = time.perf_counter() - t0
    store = egorag.Engine(db, config, models=models).store()
    texts = [s.transcript for v in store.videos() for s in store.scenes_of(v.video_id) if s.transcript]
    models.text.load_for_documents()
    t0 = time.perf_counter()
    models.text.encode_documents(texts)
    out["text"] = time.perf_counter() - t0
    if models.visual is not None:
        frames = []
        for v in videos:
            with av.open(str(v)) as c:
                step = max(1, int(c.streams.video[0].average_rate))
                for i, f in enumerate(c.decode(video=0)):
                    if i % step == 0:
                        frames.append(frame_to_square(f, models.visual.image_size))
        t0 = time.perf_counter()
        for b in range(0, len(frames), 64):
            models.visual.encode_frames(np.stack(frames[b : b + 64]))
        out["visual"] = time.perf_counter() - t0
    return out


def run_child(videos, db: Path, workers: int, visual: bool) -> dict:
    command = [sys.executable, __file__, "--child", str(db), str(workers), "1" if visual else "0", *map(str, videos)]
    out = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, EGORAG_BENCH_ASR=ASR_MODEL))
    if out.returncode:
        raise SystemExit(f"ingest child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visual-timing-only", action="store_true", help="time the visual stage with random-weight ViT-B-32")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, IngestConfig().resolved_workers()],
                        help="[ingest] workers to compare (default: 1 and this machine's default)")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="the long video's length (0: skip it)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive temp-clip pipeline")
    parser.add_argument("--asr-model", default=AsrConfig.model, help="[asr] model (default: the default)")
    args = parser.parse_args()
    global ASR_MODEL
    ASR_MODEL = args.asr_model
    workers = list(dict.fromkeys(args.workers))
    visual = args.visual_timing_only
    figures: dict = {"visual": "ViT-B-32 RANDOM weights (timing only)" if visual else "off", "asr_model": ASR_MODEL,
                     "text_model": TextConfig.model, "workloads": {}}
    with tempfile.TemporaryDirectory() as tmp:
        workloads = {"devset": [v for v in find_videos([DEVSET]) if v.stem in FIRST_SIX]}
        if args.long_minutes > 0:
            from memory_bench import make_long_video

            speech = decode_audio(HERE / "data" / "sample.mp4", 16000)
            workloads["long"] = [make_long_video(Path(tmp) / "long.mp4", args.long_minutes, speech)]
        for name, videos in workloads.items():
            video_s = sum(probe(v).duration for v in videos)
            runs = {}
            for n in workers:
                db = Path(tmp) / f"{name}_{n}"
                runs[n] = run_child(videos, db, n, visual)
                runs[n]["x_realtime"] = video_s / runs[n]["wall_seconds"]
                runs[n]["x_realtime_encoding"] = video_s / runs[n]["encode_wall_seconds"]
                print(name, f"workers={n}", {k: v for k, v in runs[n].items() if k != "stage_seconds"}, flush=True)
            floors = serial_floor(videos, Path(tmp) / f"{name}_{workers[0]}", visual)
            compute = sum(floors.values())
            for run in runs.values():
                run["wall_over_model_compute"] = run["encode_wall_seconds"] / compute
            row = {"videos": len(videos), "video_seconds": video_s, "decode_floor_seconds": decode_floor(videos),
                   "model_compute_seconds": floors, "runs": {str(n): r for n, r in runs.items()}}
            if name == "devset" and not args.no_naive:
                config = EngineConfig(modalities=("asr", "text"), ingest=IngestConfig(workers=1), asr=AsrConfig(model=ASR_MODEL))
                models = load_models(config, ("asr", "text"))
                if visual:
                    models.visual = random_vit_b32()
                store = egorag.Engine(Path(tmp) / f"{name}_{workers[0]}", config, models=models).store()
                spans = {v.path: [(s.start, s.end) for s in store.scenes_of(v.video_id)] for v in store.videos()}
                row["naive_seconds"] = naive_pipeline(videos, models, spans)
                row["naive_over_egorag"] = {str(n): row["naive_seconds"] / r["wall_seconds"] for n, r in runs.items()}
            figures["workloads"][name] = row
            print(name, {k: v for k, v in row.items() if k != "runs"}, flush=True)
            for n, r in runs.items():
                print(f"  workers={n}: {r['x_realtime_encoding']:.1f}x real time encoding, "
                      f"wall / models' compute {r['wall_over_model_compute']:.2f}, peak RSS {r['peak_rss_mb']:.0f} MB")
    save("ingest_bench" + ("_visual" if visual else "") + ("" if ASR_MODEL == AsrConfig.model else f"_{ASR_MODEL}"), figures)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        db, n, visual, *videos = sys.argv[2:]
        print(json.dumps(child([Path(v) for v in videos], Path(db), int(n), visual == "1")))
    else:
        main()
