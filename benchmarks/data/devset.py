"""The evaluation corpus: one narrated video per theme (topic order shuffled by a fixed seed) and
two paraphrased queries per topic. The first query of each topic forms the ``tune`` split (used to
choose default fusion weights), the second the ``test`` split (reported)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from make_videos import render
from topics import THEMES, TOPICS

VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-x-rp", "en-us+m3", "en-gb-scotland"]


def make_devset(out: Path) -> None:
    rng = random.Random(1234)
    queries = {"tune": [], "test": []}
    for n, (theme, topics) in enumerate(THEMES.items()):
        order = list(topics)
        rng.shuffle(order)
        video = out / f"{theme}.mp4"
        scenes = render(video, order, seed=100 + n, voice=VOICES[n % len(VOICES)], speed=rng.choice([150, 160, 170]))
        for s in scenes:
            for split, q in zip(("tune", "test"), TOPICS[s["topic"]][1]):
                queries[split].append({"query": q, "video": video.name, "topic": s["topic"], "start": s["start"], "end": s["end"]})
        print(f"wrote {video} ({video.stat().st_size} bytes, {scenes[-1]['end']:.1f}s)")
    for split, rows in queries.items():
        (out / f"queries_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "queries_all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries["tune"] + queries["test"]))


# -- the grown dev set: 16 narrated videos on neighbouring themes and 8 screen-only videos -------

SCREEN_SIZE = (640, 360)  # screen videos are drawn this large: OCR needs legible text
SCREEN_SCENE_S = 6.0


def make_more(out: Path) -> None:
    """Render the grown dev set's videos beside the first six and write the query files for all
    of them: ``queries_{tune,test,all}.jsonl`` (every query, with its ``kind``: narrated or
    screen) and ``queries_{tune,test}_{narrated,screen}.jsonl``. The first six videos and their
    queries are kept as they are (``make_devset``)."""
    from topics_more import THEMES_MORE, TOPICS_MORE

    rng = random.Random(4321)
    first = {split: [dict(r, kind="narrated") for r in _read(out / f"queries_{split}.jsonl") if r.get("kind", "narrated") == "narrated"
                     and Path(r["video"]).stem in THEMES]
             for split in ("tune", "test")}
    queries = {split: list(rows) for split, rows in first.items()}
    for n, (theme, topics) in enumerate(THEMES_MORE.items()):
        order = list(topics)
        rng.shuffle(order)
        video = out / f"{theme}.mp4"
        # every third video has a silent scene; every other one cuts the picture before the
        # narrator has finished the topic (an L-cut), as edited video does
        silent_after = {rng.randrange(len(order) - 1)} if n % 3 == 0 else set()
        lead_s = 1.5 if n % 2 else 0.0
        scenes = render_narrated(video, order, TOPICS_MORE, seed=200 + n, voice=VOICES[n % len(VOICES)],
                                 speed=rng.choice([150, 165, 180]), silent_after=silent_after, lead_s=lead_s)
        for s in scenes:
            for split, q in zip(("tune", "test"), TOPICS_MORE[s["topic"]][1]):
                queries[split].append({"query": q, "video": video.name, "topic": s["topic"], "start": s["start"],
                                       "end": s["end"], "kind": "narrated"})
        print(f"wrote {video} ({video.stat().st_size} bytes, {scenes[-1]['end']:.1f}s, lead {lead_s}s)")
    from screens import NARRATION, SCREEN_VIDEOS

    for n, (name, scenes_spec) in enumerate(SCREEN_VIDEOS.items()):
        video = out / f"{name}.mp4"
        scenes = render_screens(video, scenes_spec, NARRATION[name], seed=300 + n, voice=VOICES[n % len(VOICES)])
        for s, spec in zip(scenes, scenes_spec):
            for split, q in zip(("tune", "test"), spec["queries"]):
                queries[split].append({"query": q, "video": video.name, "topic": f"{name}/{s['index']}", "start": s["start"],
                                       "end": s["end"], "kind": "screen"})
        print(f"wrote {video} ({video.stat().st_size} bytes, {scenes[-1]['end']:.1f}s)")
    for split, rows in queries.items():
        _write(out / f"queries_{split}.jsonl", rows)
        for kind in ("narrated", "screen"):
            _write(out / f"queries_{split}_{kind}.jsonl", [r for r in rows if r["kind"] == kind])
    _write(out / "queries_all.jsonl", queries["tune"] + queries["test"])


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def render_narrated(path: Path, topics: list[str], bank: dict, seed: int, voice: str, speed: int,
                    silent_after: set[int] = frozenset(), lead_s: float = 0.0) -> list[dict]:
    """Like :func:`make_videos.render`, with two things edited video has: a silent scene (a
    picture and no speech, 4 s) after the topics in ``silent_after``, and ``lead_s``: the picture
    cuts that long before the narrator finishes a topic (the next picture appears over the end of
    the sentence). Ground truth is where each topic is spoken."""
    import av
    import numpy as np
    from make_videos import FPS, HEIGHT, PAD_S, RATE, WIDTH, _palette, shot_frame, speak

    rng = random.Random(seed)
    pieces = []  # (topic or None for silence, audio)
    for i, t in enumerate(topics):
        speech = speak(bank[t][0], voice, speed)
        pieces.append((t, np.concatenate([speech, np.zeros(int(PAD_S * RATE), np.float32)])))
        if i in silent_after:
            pieces.append((None, np.zeros(int(4.0 * RATE), np.float32)))
    audio = np.concatenate([a for _, a in pieces])
    truth, cuts, t = [], [], 0.0
    for topic, a in pieces:
        spoken = len(a) / RATE
        if topic is not None:
            truth.append({"topic": topic, "start": round(t, 3), "end": round(t + spoken - PAD_S, 3), "narration": bank[topic][0]})
        t += spoken
        cuts.append(t)
    cuts = [max(0.5, c - (lead_s + PAD_S if lead_s else 0.0)) for c in cuts[:-1]]  # picture cuts
    total = len(audio) / RATE
    n_frames = int(np.ceil(total * FPS))
    with av.open(str(path), "w") as container:
        vstream = container.add_stream("libx264", rate=FPS, options={"crf": "30", "preset": "veryslow"})
        vstream.width, vstream.height, vstream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        astream = container.add_stream("aac", rate=RATE, layout="mono")
        astream.bit_rate = 24000
        colours = [_palette(k + seed * 7, rng) for k in range(len(cuts) + 1)]
        for k in range(n_frames):
            bg, fg = colours[sum(k / FPS >= c for c in cuts)]
            container.mux(vstream.encode(shot_frame(bg, fg, k, k)))
        _mux_audio(container, astream, audio, RATE)
        container.mux(vstream.encode(None))
        container.mux(astream.encode(None))
    return truth


def _mux_audio(container, stream, audio, rate: int) -> None:
    import av

    for s in range(0, len(audio), 1024):
        chunk = audio[s : s + 1024].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, s
        container.mux(stream.encode(frame))


def render_screens(path: Path, scenes: list[dict], narration: str, seed: int, voice: str) -> list[dict]:
    """A screen-only video: each scene shows its lines for 6 s, drawn as its ``kind`` (signs pan
    slowly); ``narration`` "filler" says a filler line over every scene, "some" over every other
    one, "none" writes no audio track."""
    import av
    import numpy as np
    from make_videos import FPS, RATE, speak
    from screens import FILLER

    rng = random.Random(seed)
    width, height = SCREEN_SIZE
    n = int(SCREEN_SCENE_S * FPS)
    truth = []
    with av.open(str(path), "w") as container:
        vstream = container.add_stream("libx264", rate=FPS, options={"crf": "26", "preset": "medium"})
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        astream = None
        if narration != "none":
            astream = container.add_stream("aac", rate=RATE, layout="mono")
            astream.bit_rate = 24000
        audio = np.zeros(int(len(scenes) * SCREEN_SCENE_S * RATE), np.float32)
        for i, spec in enumerate(scenes):
            picture = _draw(spec, rng)
            for k in range(n):
                frame = av.VideoFrame.from_ndarray(_view(picture, spec["kind"], k / n, width, height), format="rgb24")
                frame.pts = i * n + k
                container.mux(vstream.encode(frame))
            if narration == "filler" or (narration == "some" and i % 2 == 0):
                speech = speak(rng.choice(FILLER), voice, 160)[: int((SCREEN_SCENE_S - 0.5) * RATE)]
                at = int((i * SCREEN_SCENE_S + 0.3) * RATE)
                audio[at : at + len(speech)] = speech
            truth.append({"index": i, "start": i * SCREEN_SCENE_S, "end": (i + 1) * SCREEN_SCENE_S})
        if astream is not None:
            _mux_audio(container, astream, audio, RATE)
            container.mux(astream.encode(None))
        container.mux(vstream.encode(None))
    return truth


STYLES = {  # kind -> (background, text colour, font)
    "slide": ((250, 250, 246), (20, 30, 60), "DejaVuSans.ttf"),
    "terminal": ((12, 12, 12), (90, 230, 110), "DejaVuSansMono.ttf"),
    "sign": ((20, 70, 150), (255, 255, 255), "DejaVuSans-Bold.ttf"),
    "board": ((15, 20, 45), (255, 190, 40), "DejaVuSansMono-Bold.ttf"),
    "card": ((245, 232, 200), (70, 40, 20), "DejaVuSerif.ttf"),
}


def _draw(spec: dict, rng: random.Random):
    """The scene's picture: a sign is drawn wider than the frame (the camera pans across it)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    width, height = SCREEN_SIZE
    bg, fg, font_name = STYLES[spec["kind"]]
    big = spec["kind"] == "sign"
    canvas = Image.new("RGB", (int(width * 1.4) if big else width, height), bg)
    draw = ImageDraw.Draw(canvas)
    size = 40 if big else 30
    y = 40
    for j, line in enumerate(spec["lines"]):
        font = ImageFont.truetype(font_name, size + (10 if j == 0 and spec["kind"] in ("slide", "card") else 0))
        draw.text((40 + rng.randrange(20), y), line, fill=fg, font=font)
        y += int(size * 1.6)
    return np.asarray(canvas)


def _view(picture, kind: str, progress: float, width: int, height: int):
    """What the camera sees ``progress`` (0-1) through the scene: a slow pan across a sign, the
    picture as it is otherwise."""
    if kind != "sign":
        return picture
    x = int((picture.shape[1] - width) * progress)
    return picture[:, x : x + width].copy()
