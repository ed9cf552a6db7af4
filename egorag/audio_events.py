"""Audio event tags: the AudioSet labels an AST classifier hears in each scene (transformers
``ASTForAudioClassification``; default ``MIT/ast-finetuned-audioset-10-10-0.4593``).

A scene's tags are the labels whose sigmoid score reaches ``[audio_events] threshold`` (AudioSet
is multi-label), best first, at most ``top_k``, from one window of at most ``max_seconds`` around
the scene's centre at 16 kHz. They are stored lower-cased in the scene's ``audio_events`` column:
BM25 reads them (a query "dog barking" finds the tags "dog" and "bark") and a search can keep
only scenes with a tag (``--audio-event``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from egorag.config import AudioEventsConfig
from egorag.devices import resolve_device
from egorag.encoders.base import centred_stretch, per_scene
from egorag.schema import SceneSpan
from egorag.weights import check_reachable, from_pretrained, resolve_model

logger = logging.getLogger("egorag")

HOW = (
    "download MIT/ast-finetuned-audioset-10-10-0.4593 on a connected machine (save_pretrained) and set "
    "[audio_events] model to that directory, or put it under $EGORAG_MODELS_DIR/MIT/ast-finetuned-audioset-10-10-0.4593"
)
BATCH = 8  # scene windows classified at a time


class AudioTagger:
    """Tags scenes with audio events. Implements the pipeline's per-scene audio protocol
    (``sample_rate``, ``reach_s``, :meth:`stretch`, :meth:`encode_scenes`), as the CLAP encoder does."""

    sample_rate = 16000
    name = "ast"

    def __init__(self, config: AudioEventsConfig = AudioEventsConfig()):
        resolved = resolve_model(config.model)
        check_reachable("AST audio event model", resolved, HOW)  # before transformers is imported
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        extractor, model = from_pretrained("AST audio event model", resolved, HOW, ASTFeatureExtractor, ASTForAudioClassification)
        self._setup(model, extractor, config.model, config, resolve_device(config.device))
        logger.info("loaded AST %s from %s on %s", config.model, resolved.source, self.device)

    @classmethod
    def from_model(cls, model, feature_extractor, checkpoint: str, config: AudioEventsConfig = AudioEventsConfig()) -> AudioTagger:
        """Wrap an already-built ``ASTForAudioClassification`` (tests build tiny ones from an ``ASTConfig``)."""
        self = cls.__new__(cls)
        self._setup(model, feature_extractor, checkpoint, config, "cpu")
        return self

    def _setup(self, model, feature_extractor, checkpoint: str, config: AudioEventsConfig, device: str) -> None:
        import torch

        self._torch = torch
        self.config, self.device, self.checkpoint = config, device, checkpoint
        self._model = model.to(device).eval()
        self.feature_extractor = feature_extractor
        labels = model.config.id2label
        self.labels = [str(labels[i]).strip().lower() for i in range(len(labels))]

    @property
    def reach_s(self) -> float:
        """The longest stretch of a scene that is classified."""
        return self.config.max_seconds

    def stretch(self, span: SceneSpan) -> tuple[float, float]:
        """The part of a scene that is classified: at most ``max_seconds`` around its centre."""
        return centred_stretch(span, self.config.max_seconds)

    def scores(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Each label's sigmoid score for each 16 kHz mono waveform: ``(len(waveforms), labels)``."""
        torch = self._torch
        if not waveforms:
            return np.zeros((0, len(self.labels)), np.float32)
        inputs = self.feature_extractor([np.asarray(w, np.float32) for w in waveforms], sampling_rate=self.sample_rate,
                                        return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            logits = self._model(**inputs).logits.float()
        return torch.sigmoid(logits).cpu().numpy()

    def tags(self, scores: np.ndarray) -> tuple[str, ...]:
        """The labels of one row of :meth:`scores` kept by the threshold, best first, at most ``top_k``."""
        best = np.argsort(-scores, kind="stable")[: self.config.top_k]
        return tuple(self.labels[i] for i in best if scores[i] >= self.config.threshold)

    def encode_scenes(self, audio: np.ndarray, spans: Sequence[SceneSpan]) -> list[tuple[str, ...] | None]:
        """Each scene's tags from its :meth:`stretch` of ``audio`` (16 kHz, time 0 at its first
        sample); ``None`` for a scene with under 0.1 s of it."""
        return per_scene(audio, spans, self.sample_rate, self.config.max_seconds,
                         lambda waveforms: [self.tags(row) for row in self.scores(waveforms)], BATCH)
