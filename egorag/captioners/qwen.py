"""Qwen2-VL video captioner (transformers + qwen-vl-utils). Frames are passed as a list of PIL
images: qwen-vl-utils' path loader needs ``torchvision.io.read_video``, gone in torchvision 0.29."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from egorag.captioners.base import shared_model
from egorag.config import CaptionConfig
from egorag.devices import resolve_device
from egorag.errors import MissingExtraError
from egorag.weights import load_error, resolve_model

logger = logging.getLogger("egorag")

DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
PROMPT = "Describe what happens in this video scene in one sentence."
MAX_PIXELS = 360 * 420  # per frame, Qwen2-VL's recommended budget for video input
HOW = "save Qwen/Qwen2-VL-2B-Instruct with save_pretrained and set [caption] model to that directory"


class Qwen2VLCaptioner:
    name = "qwen2-vl"

    def __init__(self, config: CaptionConfig = CaptionConfig(captioner="qwen2-vl")):
        try:
            import qwen_vl_utils  # noqa: F401
        except ImportError:
            raise MissingExtraError("qwen-vl-utils", "qwen") from None
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        self.config = config
        self.device = resolve_device(config.device)
        resolved = resolve_model(config.model or DEFAULT_MODEL)

        def load():
            processor = AutoProcessor.from_pretrained(resolved.location, local_files_only=resolved.is_local)
            dtype = "auto" if self.device.startswith("cuda") else None
            model = Qwen2VLForConditionalGeneration.from_pretrained(
                resolved.location, local_files_only=resolved.is_local, dtype=dtype
            )
            return model.to(self.device).eval(), processor

        try:
            model, processor = shared_model(("qwen2-vl", resolved.location, self.device), load)
        except Exception as exc:  # hub, file and config errors all mean "could not load"
            raise load_error("Qwen2-VL captioner", resolved, exc, HOW) from exc
        self._setup(model, processor, config.model or DEFAULT_MODEL)

    @classmethod
    def from_model(cls, model, processor, checkpoint: str, config: CaptionConfig = CaptionConfig(captioner="qwen2-vl")):
        self = cls.__new__(cls)
        self.config, self.device = config, "cpu"
        self._setup(model.eval(), processor, checkpoint)
        return self

    def _setup(self, model, processor, checkpoint: str) -> None:
        import torch

        self._torch, self._model, self._processor, self.checkpoint = torch, model, processor, checkpoint

    def messages(self, frames: Sequence) -> list[dict]:
        return [{"role": "user", "content": [{"type": "video", "video": list(frames), "max_pixels": MAX_PIXELS}, {"type": "text", "text": PROMPT}]}]

    def caption(self, frames: Sequence) -> str:
        from qwen_vl_utils import process_vision_info

        if not frames:
            return ""
        messages = self.messages(frames)
        text = self._processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images, videos = process_vision_info(messages)
        inputs = self._processor(text=[text], images=images, videos=videos, padding=True, return_tensors="pt")
        inputs = inputs.to(self.device)
        with self._torch.inference_mode():
            out = self._model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return self._processor.batch_decode(new_tokens, skip_special_tokens=True)[0].strip()
