"""Qwen2-VL video captioner (transformers + qwen-vl-utils). Frames are passed as a list of PIL
images: qwen-vl-utils' path loader needs ``torchvision.io.read_video``, gone in torchvision 0.29."""

from __future__ import annotations

from collections.abc import Sequence

from egorag.captioners.base import TransformersCaptioner
from egorag.errors import MissingExtraError

PROMPT = "Describe what happens in this video scene in one sentence."
MAX_PIXELS = 360 * 420  # per frame, Qwen2-VL's recommended budget for video input


def load_qwen2vl(location: str, local_files_only: bool, device: str):
    """Qwen2-VL's (model, processor) on ``device``, bfloat16 on a GPU (the checkpoint's dtype):
    the captioner and the vision-tower encoder load it through one shared cache key,
    ``("qwen2-vl", location, device)``."""
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(location, local_files_only=local_files_only)
    dtype = "auto" if device.startswith("cuda") else None
    model = Qwen2VLForConditionalGeneration.from_pretrained(location, local_files_only=local_files_only, dtype=dtype)
    return model.to(device).eval(), processor


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
        return load_qwen2vl(location, local_files_only, self.device)

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
