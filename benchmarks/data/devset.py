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
