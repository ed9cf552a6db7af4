"""Generate narrated multi-scene videos with ground truth (espeak-ng speech, PyAV encoding).

    python benchmarks/data/make_videos.py sample            # the shipped sample (committed)
    python benchmarks/data/make_videos.py devset OUT_DIR    # the evaluation corpus (reproducible)
    python benchmarks/data/make_videos.py more [OUT_DIR]    # the grown dev set, beside the first six

Each scene has its own background colour and moving shape (so shot detection finds the cuts) and
narrates one topic. Ground truth: scene times, topics and paraphrased queries, as JSON/JSONL.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from topics import TOPICS  # noqa: E402

HERE = Path(__file__).resolve().parent
SAMPLE_TOPICS = ["volcano", "bread", "bees", "bicycle", "saturn"]
FPS, WIDTH, HEIGHT, RATE = 10, 256, 144, 22050
PAD_S = 0.8  # silence after each narration, so words never straddle a cut


def speak(text: str, voice: str, speed: int) -> np.ndarray:
    """Narrate ``text`` with espeak-ng; returns mono float32 at 22.05 kHz."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", f.name, text], check=True)
        with av.open(f.name) as c:
            chunks = [fr.to_ndarray().astype(np.float32).reshape(-1) for fr in c.decode(audio=0)]
    audio = np.concatenate(chunks)
    return audio / 32768.0 if np.abs(audio).max() > 2 else audio


def _palette(i: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """Background/foreground colours whose hue steps by the golden ratio: neighbours differ a lot."""
    import colorsys

    hue = (i * 0.618034) % 1.0
    bg = colorsys.hsv_to_rgb(hue, 0.55 + 0.4 * rng.random(), 0.45 + 0.5 * rng.random())
    fg = colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.8, 0.95)
    return (np.array(bg) * 255).astype(np.uint8), (np.array(fg) * 255).astype(np.uint8)


def shot_frame(bg: np.ndarray, fg: np.ndarray, k: int, pts: int) -> av.VideoFrame:
    """Frame ``k`` of a shot: its background colour and a square moving across it."""
    img = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    img[:] = bg
    x = int((k * 4) % (WIDTH - 40))
    img[50:90, x : x + 40] = fg
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    frame.pts = pts
    return frame


def render(path: Path, topics: list[str], seed: int, voice: str = "en-us", speed: int = 165) -> list[dict]:
    """Write one narrated video; returns its scenes' ground truth."""
    rng = random.Random(seed)
    narrations = [speak(TOPICS[t][0], voice, speed) for t in topics]
    container = av.open(str(path), "w")
    vstream = container.add_stream("libx264", rate=FPS, options={"crf": "30", "preset": "veryslow"})
    vstream.width, vstream.height, vstream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    astream = container.add_stream("aac", rate=RATE, layout="mono")
    astream.bit_rate = 24000
    scenes, t0, frame_i, sample_i = [], 0.0, 0, 0
    for topic, speech in zip(topics, narrations):
        n_frames = int(np.ceil((len(speech) / RATE + PAD_S) * FPS))
        audio = np.zeros(int(round(n_frames / FPS * RATE)), dtype=np.float32)
        audio[: len(speech)] = speech[: len(audio)]
        bg, fg = _palette(len(scenes) + seed * 7, rng)
        for k in range(n_frames):
            container.mux(vstream.encode(shot_frame(bg, fg, k, frame_i)))
            frame_i += 1
        for s in range(0, len(audio), 1024):
            chunk = audio[s : s + 1024].reshape(1, -1)
            aframe = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            aframe.sample_rate, aframe.pts = RATE, sample_i
            sample_i += chunk.shape[1]
            container.mux(astream.encode(aframe))
        t1 = frame_i / FPS
        scenes.append({"topic": topic, "start": round(t0, 3), "end": round(t1, 3), "narration": TOPICS[topic][0]})
        t0 = t1
    container.mux(vstream.encode(None))
    container.mux(astream.encode(None))
    container.close()
    return scenes


def make_sample(out_dir: Path) -> None:
    video = out_dir / "sample.mp4"
    scenes = render(video, SAMPLE_TOPICS, seed=7)
    queries = [
        {"query": q, "video": video.name, "topic": s["topic"], "start": s["start"], "end": s["end"]}
        for s in scenes
        for q in TOPICS[s["topic"]][1]
    ]
    (out_dir / "sample.json").write_text(json.dumps({"video": video.name, "scenes": scenes}, indent=2) + "\n")
    (out_dir / "sample_queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    print(f"wrote {video} ({video.stat().st_size} bytes, {scenes[-1]['end']:.1f}s, {len(scenes)} scenes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["sample", "devset", "more"])
    parser.add_argument("out", nargs="?", type=Path, default=HERE)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "sample":
        make_sample(args.out)
    elif args.what == "devset":
        from devset import make_devset

        make_devset(args.out)
    else:
        from devset import make_more

        make_more(args.out if args.out != HERE else HERE / "devset")


if __name__ == "__main__":
    main()
