"""Scene segmentation: content-aware shot detection fed from the shared decode pass, then pure
functions that turn cut times into scene spans (merge short, split long) and words into scenes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from egorag.config import SceneConfig
from egorag.schema import SceneSpan, Word

SENTENCE_PAUSE_S = 0.7  # a pause this long ends a sentence, punctuated or not
SENTENCE_MAX_WORDS = 30  # nor is a sentence longer than this
SENTENCE_CARRY_S = 3.0  # at most this much of a sentence crosses a cut to stay with the rest of it


class ShotDetector:
    """A :class:`~egorag.ingest.decode.FrameConsumer` running PySceneDetect on downscaled frames.

    Cut times are the exact presentation times of the first frame of each new shot.
    """

    def __init__(self, config: SceneConfig, fps: float, width: int, height: int):
        from scenedetect import AdaptiveDetector, ContentDetector

        self.fps = fps
        # Shots shorter than this are flashes for the detector; our own merge handles the rest.
        min_len = max(1, int(round(fps * min(0.5, config.min_scene_s))))
        if config.detector == "adaptive":
            self._detector = AdaptiveDetector(min_scene_len=min_len)
        else:
            self._detector = ContentDetector(threshold=config.threshold, min_scene_len=min_len)
        scale = min(1.0, config.analysis_width / max(1, width))
        self._size = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
        self._times: list[float] = []
        self._cut_frames: list[int] = []

    def consume(self, index: int, time: float, frame) -> None:
        from scenedetect.common import FrameTimecode

        image = frame.to_ndarray(width=self._size[0], height=self._size[1], format="bgr24")
        self._times.append(time)
        cuts = self._detector.process_frame(FrameTimecode(index, self.fps), image)
        self._cut_frames += [c.frame_num for c in cuts]

    def cut_times(self) -> list[float]:
        """Times (seconds) at which a new shot starts, ascending, excluding the video start."""
        frames = list(self._cut_frames)
        if self._times and hasattr(self._detector, "post_process"):
            from scenedetect.common import FrameTimecode

            tail = self._detector.post_process(FrameTimecode(len(self._times) - 1, self.fps))
            frames += [c.frame_num for c in tail or []]
        return sorted({self._times[f] for f in frames if 0 < f < len(self._times)})


def build_scenes(cuts: Sequence[float], duration: float, config: SceneConfig) -> list[SceneSpan]:
    """Turn shot cut times into scene spans covering ``[0, duration]`` with no gaps.

    Shots shorter than ``min_scene_s`` merge into the shorter neighbour; shots longer than
    ``max_scene_s`` split into equal windows. A video with no cut becomes time windows.
    """
    if duration <= 0:
        return []
    edges = [0.0] + sorted(c for c in cuts if 0.0 < c < duration) + [duration]
    spans = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    spans = _merge_short(spans, config.min_scene_s)
    out: list[tuple[float, float]] = []
    for a, b in spans:
        n = max(1, math.ceil((b - a) / config.max_scene_s - 1e-9))
        step = (b - a) / n
        out += [(a + i * step, b if i == n - 1 else a + (i + 1) * step) for i in range(n)]
    return [SceneSpan(i, a, b) for i, (a, b) in enumerate(out)]


def _merge_short(spans: list[tuple[float, float]], min_len: float) -> list[tuple[float, float]]:
    spans = list(spans)
    while len(spans) > 1:
        lengths = [b - a for a, b in spans]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_len:
            break
        if i == 0:
            j = 1
        elif i == len(spans) - 1:
            j = i - 1
        else:  # merge into the shorter neighbour, keeping long shots intact
            j = i - 1 if lengths[i - 1] <= lengths[i + 1] else i + 1
        a, b = min(i, j), max(i, j)
        spans[a : b + 1] = [(spans[a][0], spans[b][1])]
    return spans


def assign_words(words: Sequence[Word], spans: Sequence[SceneSpan], by: str = "sentence", carry_s: float = SENTENCE_CARRY_S
                 ) -> list[list[Word]]:
    """Give each scene its words. ``by="word"``: each word to the scene containing its midpoint.
    ``by="sentence"``: a sentence (:func:`sentences`) that the picture cuts into while it is
    spoken (not in a pause), with at most ``carry_s`` of it on the other side of the cut, goes
    whole to the scene holding most of its words: edited video often cuts before the speaker has
    finished, and the sentence belongs to what it began with (or ends). Longer stretches across a
    cut go word by word, as with "word"."""
    buckets: list[list[Word]] = [[] for _ in spans]
    if not spans:
        return buckets
    starts = np.array([s.start for s in spans])

    def scene_of(word: Word) -> int:
        i = int(np.searchsorted(starts, 0.5 * (word.start + word.end), side="right")) - 1
        return min(max(i, 0), len(spans) - 1)

    groups = [[w] for w in words]
    if by == "sentence":  # a cut that falls in a pause between words ends the sentence there
        cuts = starts[1:]
        groups = [piece for sentence in sentences(words) for piece in _split_at(sentence, cuts)]
    for group in groups:
        where = [scene_of(w) for w in group]
        most = max(set(where), key=where.count)
        away = [w for w, i in zip(group, where) if i != most]
        if away and away[-1].end - away[0].start > carry_s:
            for w, i in zip(group, where):
                buckets[i].append(w)
        else:
            buckets[most] += group
    return buckets


def _split_at(words: list[Word], cuts: np.ndarray) -> list[list[Word]]:
    """``words`` cut wherever a cut time falls in the silence between two of them."""
    out, current = [], []
    for word in words:
        if current and current[-1].end < word.start and np.any((cuts >= current[-1].end) & (cuts <= word.start)):
            out.append(current)
            current = []
        current.append(word)
    return out + [current] if current else out


def sentences(words: Sequence[Word], pause_s: float = SENTENCE_PAUSE_S, max_words: int = SENTENCE_MAX_WORDS) -> list[list[Word]]:
    """``words`` split into sentences: after a word ending in ``.``, ``!`` or ``?``, at a pause of
    ``pause_s`` or more, and every ``max_words`` words (speech recognised without punctuation)."""
    out: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        if current and (word.start - current[-1].end >= pause_s or len(current) >= max_words):
            out.append(current)
            current = []
        current.append(word)
        if word.text.strip().rstrip("\"')»”").endswith((".", "!", "?")):
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def join_words(words: Sequence[Word]) -> str:
    """faster-whisper words carry their leading space; join and tidy them into one string."""
    return " ".join("".join(w.text for w in words).split())
