"""Speaker diarization: who speaks when, as a pluggable step.

A :class:`Diarizer` turns a video's whole 16 kHz mono track into speaker turns; the pipeline then
labels each transcribed word with the speaker whose turns cover most of it
(:func:`label_words`) and each scene with the speakers who talk in it for at least
``[diarize] min_speech_s`` (:func:`scene_speakers`). The labels are the diarizer's own
(``SPEAKER_00``, ...): they name the same person within one video, not across videos.

:class:`PyannoteDiarizer` is the implementation egorag ships, in the ``diarize`` extra
(``pip install 'egorag[diarize]'``): pyannote.audio 4 beside the pinned torch. Its pipelines'
weights are gated on the Hugging Face hub (accept the terms, then ``save_pretrained`` or a
snapshot download) and are never fetched at run time.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from egorag.config import DiarizeConfig
from egorag.devices import resolve_device
from egorag.errors import ModelLoadError
from egorag.schema import SceneSpan, Word
from egorag.weights import check_reachable, resolve_model

logger = logging.getLogger("egorag")

SAMPLE_RATE = 16000
HOW = (
    "pip install 'egorag[diarize]', download pyannote/speaker-diarization-community-1 on a connected machine "
    "(its terms accepted on the hub) and set [diarize] model to that directory, or put it under "
    "$EGORAG_MODELS_DIR/pyannote/speaker-diarization-community-1"
)


@dataclass(frozen=True)
class Turn:
    """One stretch of one speaker's speech, in seconds from the start of the track."""

    start: float
    end: float
    speaker: str


class Diarizer(Protocol):
    """What the pipeline needs of a diarizer."""

    name: str
    checkpoint: str

    def diarize(self, audio: np.ndarray) -> list[Turn]:
        """The speaker turns of a whole 16 kHz mono float32 track."""
        ...


def label_words(words: Sequence[Word], turns: Sequence[Turn]) -> list[Word]:
    """``words`` with each one's ``speaker``: the speaker whose turns overlap it the longest (a
    word no turn touches: the nearest turn's speaker within 1 s, else none)."""
    if not turns:
        return list(words)
    starts = np.array([t.start for t in turns])
    ends = np.array([t.end for t in turns])
    names = [t.speaker.lower() for t in turns]
    out = []
    for w in words:
        overlap = np.minimum(ends, w.end) - np.maximum(starts, w.start)
        best = int(np.argmax(overlap))
        speaker = names[best] if overlap[best] > 0 else None
        if speaker is None:
            gap = np.maximum(starts - w.end, w.start - ends)
            near = int(np.argmin(gap))
            speaker = names[near] if gap[near] <= 1.0 else None
        out.append(Word(w.start, w.end, w.text, w.probability, speaker))
    return out


def scene_speakers(turns: Sequence[Turn], spans: Sequence[SceneSpan], min_speech_s: float) -> list[tuple[str, ...]]:
    """Per scene, the speakers who talk in it for at least ``min_speech_s`` (at least some of
    the time when the scene is shorter), the one who talks most first."""
    out = []
    for span in spans:
        talk: dict[str, float] = {}
        for t in turns:
            overlap = min(t.end, span.end) - max(t.start, span.start)
            if overlap > 0:
                talk[t.speaker.lower()] = talk.get(t.speaker.lower(), 0.0) + overlap
        enough = min(min_speech_s, 0.5 * span.duration)
        out.append(tuple(s for s, _ in sorted(talk.items(), key=lambda kv: (-kv[1], kv[0])) if talk[s] >= enough and talk[s] > 0))
    return out


def pyannote_installed() -> bool:
    return importlib.util.find_spec("pyannote") is not None and importlib.util.find_spec("pyannote.audio") is not None


class PyannoteDiarizer:
    """pyannote.audio's speaker diarization pipeline (``Pipeline.from_pretrained`` on a local
    directory or a cached hub id)."""

    name = "pyannote"

    def __init__(self, config: DiarizeConfig = DiarizeConfig()):
        if not pyannote_installed():
            raise ModelLoadError(f"pyannote.audio is not installed. To enable: {HOW}")
        resolved = resolve_model(config.model)
        check_reachable("pyannote diarization pipeline", resolved, HOW)
        from pyannote.audio import Pipeline

        try:
            pipeline = Pipeline.from_pretrained(resolved.location)
        except Exception as exc:  # pyannote raises many types for a missing or partial download
            raise ModelLoadError(f"could not load the pyannote pipeline {config.model!r}: {exc}. To enable: {HOW}") from exc
        if pipeline is None:  # what from_pretrained returns for a gated model it could not fetch
            raise ModelLoadError(f"could not load the pyannote pipeline {config.model!r}. To enable: {HOW}")
        self._wrap(pipeline, config.model, resolve_device(config.device))

    @classmethod
    def from_pipeline(cls, pipeline, checkpoint: str, device: str = "cpu") -> PyannoteDiarizer:
        """Wrap an already-built pyannote pipeline."""
        self = cls.__new__(cls)
        self._wrap(pipeline, checkpoint, device)
        return self

    def _wrap(self, pipeline, checkpoint: str, device: str) -> None:
        import torch

        self._torch = torch
        self.checkpoint, self.device = checkpoint, device
        self._pipeline = pipeline.to(torch.device(device))

    def diarize(self, audio: np.ndarray) -> list[Turn]:
        if not len(audio):
            return []
        waveform = self._torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None]
        output = self._pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE})
        turns = output.speaker_diarization.itertracks(yield_label=True)  # pyannote 4's DiarizeOutput
        return [Turn(float(seg.start), float(seg.end), str(label)) for seg, _, label in turns]
