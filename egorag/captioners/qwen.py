"""Qwen2-VL video captioner (transformers + qwen-vl-utils). Frames are passed as a list of PIL
images: qwen-vl-utils' path loader needs ``torchvision.io.read_video``, gone in torchvision 0.29."""

from __future__ import annotations

from collections.abc import Sequence

from egorag.captioners.base import TransformersCaptioner
from egorag.errors import MissingExtraError

PROMPT = "Describe what happens in this video scene in one sentence."
MAX_PIXELS = 360 * 420  # per frame, Qwen2-VL's recommended budget for video input


class Qwen2VLCaptioner(TransformersCaptioner):
    name = "qwen2-vl"
    default_model = "Qwen/Qwen2-VL-2B-Instruct"
    how = "save Qwen/Qwen2-VL-2B-Instruct with save_pretrained and set [caption] model to that directory"

    def __init__(self, config):
        try:
            import qwen_vl_utils  # noqa: F401
        except ImportError:
            raise MissingExtraError("qwen-vl-utils", "qwen") from None
        super().__init__(config)

    def _load(self, location: str, local_files_only: bool):
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        processor = AutoProcessor.from_pretrained(location, local_files_only=local_files_only)
        dtype = "auto" if self.device.startswith("cuda") else None
        model = Qwen2VLForConditionalGeneration.from_pretrained(location, local_files_only=local_files_only, dtype=dtype)
        return model, processor

    def messages(self, frames: Sequence) -> list[dict]:
        return [{"role": "user", "content": [{"type": "video", "video": list(frames), "max_pixels": MAX_PIXELS}, {"type": "text", "text": PROMPT}]}]

    def caption(self, frames: Sequence) -> str:
        from qwen_vl_utils import process_vision_info

        if not frames:
            return ""
        messages = self.messages(frames)
        text = self._processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images, videos = process_vision_info(messages)
        inputs = self._processor(text=[text], images=images, videos=videos, padding=True, return_tensors="pt").to(self.device)
        with self._torch.inference_mode():
            out = self._model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return self._processor.batch_decode(new_tokens, skip_special_tokens=True)[0].strip()
