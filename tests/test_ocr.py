"""On-screen text: frames chosen where the picture changed, lines per scene, and the real
RapidOCR (offline, its models ship in its wheel) reading a rendered slide into the index."""

from __future__ import annotations

import numpy as np
import pytest
from writer_proc import HashEncoder, config

from egorag.config import OcrConfig
from egorag.ocr import ScreenFrames, _seen
from egorag.schema import SceneSpan

SLIDES = [("Quarterly revenue grew twelve percent", "Margins held steady"),
          ("Departure board platform seven", "Train to Lisbon delayed")]


class Frame:
    """What the decode pass hands a consumer, for a solid grey picture of ``level``."""

    def __init__(self, level: int, size=(320, 180)):
        self.width, self.height, self.level = size[0], size[1], level

    def to_ndarray(self, width, height, format):
        shape = (height, width) if format == "gray" else (height, width, 3)
        return np.full(shape, self.level, np.uint8)


class CountingReader:
    def __init__(self):
        self.calls = []

    def read(self, image):
        self.calls.append(int(image[0, 0, 0]))
        return [(f"text {image[0, 0, 0]}", 0.99), ("noise", 0.1)]


def test_frames_are_read_when_the_picture_changes_at_most_once_a_period():
    reader = CountingReader()
    frames = ScreenFrames(reader, OcrConfig(period_s=1.0, change=0.04, min_score=0.5))
    levels = [10] * 50 + [200] * 50 + [205] * 50 + [60] * 50  # a cut at 2 s, a tiny change at 4 s, a cut at 6 s
    for i, level in enumerate(levels):
        frames.consume(i, i / 25, Frame(level))
    assert reader.calls == [10, 200, 60]  # the tiny change is not read again
    spans = [SceneSpan(0, 0.0, 2.0), SceneSpan(1, 2.0, 5.0), SceneSpan(2, 5.0, 6.0), SceneSpan(3, 6.0, 8.0)]
    assert frames.text_for(spans) == ["text 10", "text 200", "text 200", "text 60"]  # a still picture carries on


class Slide:
    """A frame of one slide design: a white picture with a dark line of "text" (a bar) whose
    length tells the slides apart; about 4 % of the picture changes from slide to slide."""

    def __init__(self, n: int, size=(320, 180)):
        self.width, self.height, self.n = size[0], size[1], n

    def to_ndarray(self, width, height, format):
        img = np.full((height, width), 250, np.uint8)
        img[height // 3 : height // 3 + max(1, height // 12), width // 10 : width // 10 + (self.n + 1) * width // 8] = 20
        return img if format == "gray" else np.repeat(img[..., None], 3, axis=2)


TITLES = ["quarterly revenue grew", "departure board platform", "lemon drizzle cake", "mitochondria make energy",
          "museum opening hours", "wifi password here", "tide tables today", "exam room schedule"]


class BarReader:
    """Reads a :class:`Slide`: the bar's length, as words."""

    def __init__(self):
        self.calls = 0

    def read(self, image):
        self.calls += 1
        length = int((image[image.shape[0] // 3 + 1, :, 0] < 128).sum() * 8 / image.shape[1])
        return [(TITLES[length % len(TITLES)], 0.99)]


def test_a_new_slide_of_the_same_design_is_read_and_cuts_a_scene():
    reader = BarReader()
    frames = ScreenFrames(reader, OcrConfig(period_s=2.0))
    slides = [0] * 150 + [2] * 40 + [2] * 110 + [4] * 150  # new slides at 6.0 s and 12.0 s (25 fps)
    for i, n in enumerate(slides):
        frames.consume(i, i / 25, Slide(n))
    frame_diff = np.abs(Slide(0).to_ndarray(64, 36, "gray").astype(int) - Slide(2).to_ndarray(64, 36, "gray")).mean()
    assert frame_diff < 0.04 * 255  # the picture's mean barely moves: a whole-frame measure would miss it
    assert reader.calls == 3
    assert frames.text_cuts(end=18.0) == [6.0, 12.0]  # when each slide appeared, not when it was read
    assert frames.text_cuts(end=15.0) == [6.0]  # the last slide was not on screen long enough to be a scene
    spans = [SceneSpan(0, 0.0, 6.0), SceneSpan(1, 6.0, 12.0), SceneSpan(2, 12.0, 18.0)]
    lines = frames.lines_for(spans)
    assert [len(ls) for ls in lines] == [1, 1, 1] and lines[1][0][0] == 6.0  # each scene its own slide, from when it appeared


def test_text_that_changes_every_few_seconds_does_not_cut_scenes():
    """Burned-in subtitles: a new line every 2.5 s over a moving picture is read, but is not a
    new scene each time."""
    reader = BarReader()
    frames = ScreenFrames(reader, OcrConfig(period_s=2.0))
    for i in range(25 * 30):
        frames.consume(i, i / 25, Slide(4 * ((i // 62) % 2)))  # a new "subtitle" every 2.48 s
    assert reader.calls >= 10
    assert frames.text_cuts(end=30.0) == []


def slide_video(path, seconds_per_slide=2, fps=10, same_design=False):
    import av
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 26)
    except OSError:
        font = ImageFont.load_default(size=26)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        n = 0
        for i, lines in enumerate(SLIDES):
            dark = i % 2 == 1 and not same_design  # a different slide design: a real cut
            img = Image.new("RGB", (640, 360), (30, 50, 90) if dark else (255, 255, 255))
            draw = ImageDraw.Draw(img)
            for j, line in enumerate(lines):
                draw.text((30, 80 + 70 * j), line, fill="white" if dark else "black", font=font)
            for _ in range(seconds_per_slide * fps):
                frame = av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")
                frame.pts = n
                n += 1
                for packet in s.encode(frame):
                    c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    return path


@pytest.fixture(scope="module")
def screen_reader():
    from egorag.ocr import ScreenReader

    return ScreenReader(OcrConfig())


def test_real_ocr_cuts_slides_of_one_design_into_scenes(tmp_path, screen_reader):
    from egorag.engine import Engine
    from egorag.models import ModelSet

    video = slide_video(tmp_path / "slides.mp4", seconds_per_slide=6, same_design=True)
    engine = Engine(tmp_path / "db", config(), models=ModelSet(ocr=screen_reader, text=HashEncoder(dim=64)))
    assert engine.index([video]).scenes == 2  # no picture cut: the text changed
    hit = engine.search("Lisbon train", k=2).hits[0]
    assert hit.start == pytest.approx(6.0, abs=0.3) and "Lisbon" in hit.screen_text and "Quarterly" not in hit.screen_text


def test_real_ocr_reads_slides_into_the_index_and_search_finds_them(tmp_path, screen_reader):
    from egorag.engine import Engine
    from egorag.models import ModelSet

    video = slide_video(tmp_path / "slides.mp4")
    engine = Engine(tmp_path / "db", config(), models=ModelSet(ocr=screen_reader, text=HashEncoder(dim=64)))
    report = engine.index([video])
    assert report.indexed and report.scenes == 2
    hit = engine.search("Lisbon train", k=2).hits[0]
    assert hit.scene == 1 and "Lisbon" in hit.screen_text and "bm25" in hit.scores
    assert hit.moment == pytest.approx(2.0, abs=0.25)  # the line's slide appeared at 2 s
    assert hit.moment_source == "screen" and "Lisbon" in hit.moment_text
    from retrieval.answer import evidence_block

    assert f"(shown: {hit.moment_text})" in evidence_block(hit)  # ask cites the line
    assert hit.to_dict()["screen_text"] == hit.screen_text
    first = engine.search("quarterly revenue", k=2).hits[0]
    assert first.scene == 0 and "Quarterly revenue" in first.screen_text


class Moving:
    """A frame of footage without text: a dark square moving across a light picture, and after
    ``cut_at`` seconds a new shot (dark picture)."""

    def __init__(self, t: float, cut_at: float, size=(320, 180)):
        self.width, self.height, self.t, self.cut_at = size[0], size[1], t, cut_at

    def to_ndarray(self, width, height, format):
        img = np.full((height, width), 40 if self.t >= self.cut_at else 230, np.uint8)
        x = int(self.t * width / 10) % width
        img[height // 4 : height // 2, x : x + width // 6] = 120
        return img if format == "gray" else np.repeat(img[..., None], 3, axis=2)


def test_moving_footage_without_text_is_read_less_and_less_but_a_new_shot_at_once():
    reader = CountingReader()
    reader.read = lambda image: reader.calls.append(image[0, 0, 0]) or []  # finds no text
    frames = ScreenFrames(reader, OcrConfig(period_s=2.0))
    for i in range(25 * 60):
        frames.consume(i, i / 25, Moving(i / 25, cut_at=50.0))
    times = [t for t, _, _ in frames.reads]
    assert times[:4] == [0.0, 4.0, 12.0, 20.0]  # 4 s after one empty read, then the longest wait, 8
    assert len(times) <= 10  # not 30
    assert any(50.0 <= t <= 52.0 for t in times)  # the cut at 50 s is read within period_s


def test_a_sign_the_camera_pans_across_is_one_text_until_the_next_sign():
    """Reads of a panning sign lose letters at the picture's edge ("EUM OF MODER"): pieces of
    three letters or more still count as the sign's words; the next sign starts a new text.
    Shorter pieces are part of too many words to count ("e" is in "museum")."""
    frames = ScreenFrames(CountingReader())
    frames.reads = [
        (0.0, ["MUSEUM OF MODERN ART", "Open 10:00 - 18:00"], 0.0),
        (2.0, ["USEUM OF MODERN ART", "pen 10:00 - 18:00"], 0.3),
        (4.0, ["EUM OF MODER", "0:00 - 8:00"], 2.3),  # only "of" and "-" whole
        (6.0, ["H 2 km", "r 5 m"], 6.0),
        (8.0, ["BEACH 2 km", "Harbour 500 m"], 6.3),
        (10.0, ["EACH 2 km", "arbour 500 m"], 8.3),
    ]
    assert frames.text_cuts(end=12.0) == [6.0]
    assert _seen("eum", {"museum"}) and _seen("-", {"-"}) and not _seen("e", {"museum"}) and not _seen("km", {"kms"})
