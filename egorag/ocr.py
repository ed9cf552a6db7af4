"""On-screen text: RapidOCR (PP-OCR ONNX models shipped in its wheel, offline) over frames chosen
in the shared decode pass.

OCR costs ~0.4 s a 640-px frame here, so it reads only frames where the picture changed (cells
of a downscaled grey frame against the last frame read) and at most one every ``period_s``.
A scene's text is the lines of the pictures on screen during it. Where the text read changes,
the screen changed: those times cut scenes too (slides of one design have no picture cut).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from egorag.config import OcrConfig
from egorag.errors import ModelLoadError
from egorag.schema import SceneSpan

logger = logging.getLogger("egorag")

HOW = 'pip install "rapidocr==3.10.0" (its wheel carries the models; it runs offline)'
THUMB = (64, 36)  # the picture's change is measured on grey frames this small
PROBE_S = 0.25  # how often it is measured
CELL_LEVELS = 16  # a cell changed when its grey level moved by more than this (of 255)
CUT_SHARE = 0.5  # a change this large between two measures is a new shot
IDLE_PERIOD_S = 8.0  # the longest wait between reads of a moving picture without text
TEXT_SCENE_MIN_S = 5.0  # a change of the text on screen cuts a scene when both texts stayed this long


class TextReader(Protocol):
    """Reads the text lines of an RGB frame: ``(text, confidence)`` pairs, top to bottom."""

    def read(self, image: np.ndarray) -> list[tuple[str, float]]: ...


class ScreenReader:
    """RapidOCR behind :class:`TextReader`; the detector sees at most ``max_side`` pixels a side
    and the angle classifier is off (screen text is upright)."""

    name = "rapidocr"

    def __init__(self, config: OcrConfig = OcrConfig()):
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise ModelLoadError(f"rapidocr is not installed. To enable: {HOW}") from exc
        params = {"Global.use_cls": False, "Global.log_level": "error", "Det.limit_side_len": config.max_side,
                  "Det.limit_type": "max", "Global.text_score": config.min_score}
        try:
            self._ocr = RapidOCR(params=params)
        except Exception as exc:  # model files and runtime errors all mean "could not load"
            raise ModelLoadError(f"RapidOCR could not load ({type(exc).__name__}: {exc}). To enable: {HOW}") from exc
        self.config = config
        self.model_name = f"rapidocr {config.max_side}px"

    def read(self, image: np.ndarray) -> list[tuple[str, float]]:
        out = self._ocr(image)
        texts = getattr(out, "txts", None) or ()
        scores = getattr(out, "scores", None) or ()
        return [(t.strip(), float(s)) for t, s in zip(texts, scores) if t and t.strip()]


class ScreenFrames:
    """A frame consumer of the decode pass: reads the frames where the picture changed (at most
    one every ``period_s``) and keeps their lines, with the time each picture first appeared.

    The change is measured on small grey frames (``THUMB``), every ``PROBE_S``: the share of
    cells that moved by more than ``CELL_LEVELS`` grey levels since the last frame read. A new
    slide of the same design, a new line in a terminal, changes few pixels but many cells a
    lot; compression noise changes many cells a little. When the text read changes (fewer than
    half its words read before) and both texts stayed a while, the screen changed:
    :meth:`text_cuts` gives those times, so a talk's slides become scenes even where the picture
    has no cut."""

    def __init__(self, reader: TextReader, config: OcrConfig = OcrConfig()):
        self.reader, self.config = reader, config
        self.reads: list[tuple[float, list[str], float]] = []  # (time, lines, since when that picture is on screen)
        self._last_time = -np.inf
        self._last_probe = -1
        self._last_thumb: np.ndarray | None = None  # of the last frame read
        self._probed: np.ndarray | None = None  # of the last frame measured
        self._jump: tuple[float, float | None] = (0.0, None)  # the largest change between two measures since the last read, and when
        self._empty = 0  # reads in a row that found no text

    def consume(self, index: int, time: float, frame) -> None:
        probe = int(time // PROBE_S)  # the first frame of each PROBE_S of the video
        if probe == self._last_probe:
            return
        self._last_probe = probe
        thumb = frame.to_ndarray(width=THUMB[0], height=THUMB[1], format="gray").astype(np.int16)
        step = _changed(thumb, self._probed) if self._probed is not None else None
        if step is not None and step > self._jump[0]:
            self._jump = (step, time)
        self._probed = thumb
        if self._last_thumb is not None:
            if _changed(thumb, self._last_thumb) <= self.config.change:
                return
            cut = self._jump[0] >= CUT_SHARE  # a new shot since the last read: maybe a slide, read it soon
            if time - self._last_time < (self.config.period_s if cut else self._period()):
                return
        # when this picture appeared: where the picture jumped most since the last read (a new
        # slide; the switch to the next sign during a pan), not merely where it began to move
        since = time if self._jump[1] is None else self._jump[1]
        self._last_time, self._last_thumb, self._jump = time, thumb, (0.0, None)
        scale = min(1.0, self.config.max_side / max(frame.width, frame.height))
        width, height = max(2, round(frame.width * scale)) // 2 * 2, max(2, round(frame.height * scale)) // 2 * 2
        image = frame.to_ndarray(width=width, height=height, format="rgb24")
        lines = [text for text, score in self.reader.read(image) if score >= self.config.min_score]
        self._empty = 0 if lines else self._empty + 1
        self.reads.append((time, lines, since))

    def _period(self) -> float:
        """How long to wait before the next read of a moving picture: ``period_s``, doubled after
        each read that found no text, up to ``IDLE_PERIOD_S`` (footage that moves but shows no
        text is read less and less often; a new shot is read at once)."""
        return min(self.config.period_s * 2 ** self._empty, max(self.config.period_s, IDLE_PERIOD_S))

    def text_cuts(self, end: float) -> list[float]:
        """When the text on screen changed for a while: a read at least half of whose words were
        read before in the current run (or are parts of them) continues it (a still slide, a sign
        the camera pans across, a slide that gains a line); any other starts a new run;
        a new run starts a scene where it and the run before each stayed on screen at least
        ``TEXT_SCENE_MIN_S`` (``end``: when the video ends). Text that changes faster (burned-in
        subtitles, a ticker, a clock) does not cut."""
        runs: list[tuple[float, set[str]]] = []  # (since, the words read in it)
        for _, lines, since in self.reads:
            words = _words(lines)
            if runs and sum(_seen(w, runs[-1][1]) for w in words) >= 0.5 * len(words):
                runs[-1][1].update(words)
            else:
                runs.append((since, words))
        starts = [since for since, _ in runs] + [end]
        return [starts[i] for i in range(1, len(runs))
                if starts[i] - starts[i - 1] >= TEXT_SCENE_MIN_S and starts[i + 1] - starts[i] >= TEXT_SCENE_MIN_S]

    def lines_for(self, spans: Sequence[SceneSpan]) -> list[tuple[tuple[float, str], ...]]:
        """Each scene's on-screen lines with the time each appeared: those of the pictures on
        screen during it (a still picture is read once, and counts from when it appeared),
        deduplicated case- and space-insensitively, in the order they first appeared."""
        shown = [(since, self.reads[i + 1][2] if i + 1 < len(self.reads) else np.inf, lines)
                 for i, (_, lines, since) in enumerate(self.reads)]
        starts = [s for s, _, _ in shown]
        out = []
        for span in spans:
            first = max(0, bisect.bisect_right(starts, span.start) - 1)
            seen, kept = set(), []
            for since, until, lines in shown[first:]:
                if since >= span.end:
                    break
                if until <= span.start:
                    continue
                for text in lines:
                    key = " ".join(text.lower().split())
                    if key not in seen:
                        seen.add(key)
                        kept.append((max(since, span.start), text))
            out.append(tuple(kept))
        return out

    def text_for(self, spans: Sequence[SceneSpan]) -> list[str]:
        """Each scene's on-screen text, one line per line (:meth:`lines_for` without times)."""
        return ["\n".join(text for _, text in lines) for lines in self.lines_for(spans)]


def _changed(a: np.ndarray, b: np.ndarray) -> float:
    """The share of cells that moved by more than ``CELL_LEVELS`` from ``b`` to ``a``."""
    return float((np.abs(a - b) > CELL_LEVELS).mean())


def _words(lines: Sequence[str]) -> set[str]:
    return {w for line in lines for w in line.lower().split()}


def _seen(word: str, words: set[str]) -> bool:
    """``word`` is among ``words``, or (three letters or more) part of one: text cut off at the
    picture's edge. Shorter pieces ("a", "-") are part of too many words to tell anything."""
    return word in words or (len(word) >= 3 and any(word in w for w in words))

