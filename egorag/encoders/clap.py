"""CLAP audio encoder (transformers ``ClapModel``; default ``laion/clap-htsat-unfused``).

Audio is 48 kHz mono from PyAV; each scene contributes one window of at most
``AudioConfig.max_seconds`` around its centre. Query text goes through CLAP's text tower.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from egorag.config import AudioConfig
from egorag.devices import resolve_device
from egorag.encoders.base import centred_stretch, check_output, l2_normalize, per_scene
from egorag.encoders.registry import register_encoder
from egorag.schema import SceneSpan
from egorag.weights import check_reachable, from_pretrained, resolve_model

logger = logging.getLogger("egorag")

HOW = (
    "download laion/clap-htsat-unfused on a connected machine (save_pretrained) and set [audio] model "
    "to that directory, or put it under $EGORAG_MODELS_DIR/laion/clap-htsat-unfused"
)


def _features(output):
    """transformers 5 returns a ModelOutput from get_*_features; older versions a tensor."""
    return output.pooler_output if hasattr(output, "pooler_output") else output


@register_encoder("clap")
class ClapEncoder:
    modality = "audio"
    text_queries = True
    sample_rate = 48000

    def __init__(self, config: AudioConfig = AudioConfig()):
        resolved = resolve_model(config.model)
        check_reachable("CLAP model", resolved, HOW)  # before transformers is imported
        from transformers import ClapModel, ClapProcessor

        self.config = config
        self.device = resolve_device(config.device)
        processor, model = from_pretrained("CLAP model", resolved, HOW, ClapProcessor, ClapModel)
        self._setup(model, processor.feature_extractor, processor.tokenizer, config.model)
        logger.info("loaded CLAP %s from %s on %s", config.model, resolved.source, self.device)

    @classmethod
    def from_model(cls, model, feature_extractor, tokenizer, checkpoint: str, config: AudioConfig = AudioConfig()):
        """Wrap an already-built ClapModel (tests build tiny ones from a ClapConfig)."""
        self = cls.__new__(cls)
        self.config, self.device = config, "cpu"
        self._setup(model, feature_extractor, tokenizer, checkpoint)
        return self

    def _setup(self, model, feature_extractor, tokenizer, checkpoint: str) -> None:
        import torch

        self._torch = torch
        self._model = model.to(self.device).eval()
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.checkpoint = checkpoint
        self.dim = int(model.config.projection_dim)

    def load_for_documents(self) -> None:
        """Loaded whole at construction: nothing more for documents."""

    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Embed 48 kHz mono float32 waveforms."""
        torch = self._torch
        if not waveforms:
            return np.zeros((0, self.dim), dtype=np.float32)
        inputs = self.feature_extractor(
            [np.asarray(w, dtype=np.float32) for w in waveforms], sampling_rate=self.sample_rate, return_tensors="pt"
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = _features(self._model.get_audio_features(**inputs)).float().cpu().numpy()
        return check_output(self, l2_normalize(out), len(waveforms))

    encode_documents = encode_audio

    @property
    def reach_s(self) -> float:
        """The longest stretch of a scene that is embedded."""
        return self.config.max_seconds

    def stretch(self, span: SceneSpan) -> tuple[float, float]:
        """The part of a scene its embedding hears: at most ``max_seconds`` around its centre."""
        return centred_stretch(span, self.config.max_seconds)

    def encode_scenes(self, audio: np.ndarray, spans: Sequence[SceneSpan]) -> list[np.ndarray | None]:
        """One embedding per scene from its :meth:`stretch`; scenes with too little audio get ``None``."""
        return per_scene(audio, spans, self.sample_rate, self.config.max_seconds, self.encode_audio, 16)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        inputs = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            out = _features(self._model.get_text_features(**inputs)).float().cpu().numpy()
        return check_output(self, l2_normalize(out), len(texts))
