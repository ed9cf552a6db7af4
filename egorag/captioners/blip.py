"""BLIP image captioner (transformers): captions the middle frame of each scene."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from egorag.captioners.base import shared_model
from egorag.config import CaptionConfig
from egorag.devices import resolve_device
from egorag.weights import load_error, resolve_model

logger = logging.getLogger("egorag")

DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"
HOW = "save Salesforce/blip-image-captioning-base with save_pretrained and set [caption] model to that directory"


class BlipCaptioner:
    name = "blip"

    def __init__(self, config: CaptionConfig = CaptionConfig(captioner="blip")):
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.config = config
        self.device = resolve_device(config.device)
        resolved = resolve_model(config.model or DEFAULT_MODEL)

        def load():
            processor = BlipProcessor.from_pretrained(resolved.location, local_files_only=resolved.is_local)
            model = BlipForConditionalGeneration.from_pretrained(resolved.location, local_files_only=resolved.is_local)
            return model.to(self.device).eval(), processor

        try:
            model, processor = shared_model(("blip", resolved.location, self.device), load)
        except Exception as exc:  # hub, file and config errors all mean "could not load"
            raise load_error("BLIP captioner", resolved, exc, HOW) from exc
        self._setup(model, processor, config.model or DEFAULT_MODEL)

    @classmethod
    def from_model(cls, model, processor, checkpoint: str, config: CaptionConfig = CaptionConfig(captioner="blip")):
        self = cls.__new__(cls)
        self.config, self.device = config, "cpu"
        self._setup(model.eval(), processor, checkpoint)
        return self

    def _setup(self, model, processor, checkpoint: str) -> None:
        import torch

        self._torch, self._model, self._processor, self.checkpoint = torch, model, processor, checkpoint

    def caption(self, frames: Sequence) -> str:
        if not frames:
            return ""
        middle = frames[len(frames) // 2]
        inputs = self._processor(images=middle, return_tensors="pt").to(self.device)
        with self._torch.inference_mode():
            out = self._model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False)
        return self._processor.decode(out[0], skip_special_tokens=True).strip()
