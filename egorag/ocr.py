"""On-screen text: RapidOCR (PP-OCR ONNX models shipped in its wheel, offline) over frames chosen
in the shared decode pass.

OCR costs ~0.4 s a 640-px frame here, so it reads only frames where the picture changed (a
downscaled grey difference against the last frame read) and at most one every ``period_s``.
A scene's text is the lines read in it, and in the frame on screen as it began.
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
THUMB = (32, 18)  # the picture's change is measured on grey frames this small


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
    one every ``period_s``) and keeps their lines with their times."""

    def __init__(self, reader: TextReader, config: OcrConfig = OcrConfig()):
        self.reader, self.config = reader, config
        self.reads: list[tuple[float, list[str]]] = []  # (time, lines) of each frame read
        self._last_time = -np.inf
        self._last_thumb: np.ndarray | None = None

    def consume(self, index: int, time: float, frame) -> None:
        if time - self._last_time < self.config.period_s:
            return
        thumb = frame.to_ndarray(width=THUMB[0], height=THUMB[1], format="gray").astype(np.float32)
        if self._last_thumb is not None and np.abs(thumb - self._last_thumb).mean() < self.config.change * 255:
            return
        self._last_time, self._last_thumb = time, thumb
        scale = min(1.0, self.config.max_side / max(frame.width, frame.height))
        width, height = max(2, round(frame.width * scale)) // 2 * 2, max(2, round(frame.height * scale)) // 2 * 2
        image = frame.to_ndarray(width=width, height=height, format="rgb24")
        self.reads.append((time, [text for text, score in self.reader.read(image) if score >= self.config.min_score]))

    def lines_for(self, spans: Sequence[SceneSpan]) -> list[tuple[tuple[float, str], ...]]:
        """Each scene's on-screen lines with the time each appeared: those of the frames read
        inside it and of the last frame read before it (what was on screen as it began, at the
        scene's start: a still picture is read once), deduplicated case- and
        space-insensitively, in the order they first appeared."""
        times = [t for t, _ in self.reads]
        out = []
        for span in spans:
            first = max(0, bisect.bisect_right(times, span.start) - 1)
            seen, kept = set(), []
            for t, lines in self.reads[first:]:
                if t >= span.end:
                    break
                for text in lines:
                    key = " ".join(text.lower().split())
                    if key not in seen:
                        seen.add(key)
                        kept.append((max(t, span.start), text))
            out.append(tuple(kept))
        return out

    def text_for(self, spans: Sequence[SceneSpan]) -> list[str]:
        """Each scene's on-screen text, one line per line (:meth:`lines_for` without times)."""
        return ["\n".join(text for _, text in lines) for lines in self.lines_for(spans)]
