"""BLIP image captioner (transformers): captions the middle frame of each scene."""

from __future__ import annotations

from collections.abc import Sequence

from egorag.captioners.base import TransformersCaptioner


class BlipCaptioner(TransformersCaptioner):
    name = "blip"
    default_model = "Salesforce/blip-image-captioning-base"
    how = "save Salesforce/blip-image-captioning-base with save_pretrained and set [caption] model to that directory"

    def _load(self, location: str, local_files_only: bool):
        from transformers import BlipForConditionalGeneration, BlipProcessor

        processor = BlipProcessor.from_pretrained(location, local_files_only=local_files_only)
        return BlipForConditionalGeneration.from_pretrained(location, local_files_only=local_files_only), processor

    def caption(self, frames: Sequence) -> str:
        if not frames:
            return ""
        middle = frames[len(frames) // 2]
        inputs = self._processor(images=middle, return_tensors="pt").to(self.device)
        with self._torch.inference_mode():
            out = self._model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False)
        return self._processor.decode(out[0], skip_special_tokens=True).strip()
