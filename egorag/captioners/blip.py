"""BLIP image captioner (transformers): captions each of a scene's frames in one batch and joins
the distinct captions into the scene's caption."""

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
        """Every frame captioned (one batched ``generate``), then the distinct captions joined
        with "; " in frame order: a scene that shows one thing reads as one caption."""
        if not frames:
            return ""
        inputs = self._processor(images=list(frames), return_tensors="pt").to(self.device)
        with self._torch.inference_mode():
            out = self._model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False)
        return join_captions(self._processor.batch_decode(out, skip_special_tokens=True))


def join_captions(captions: Sequence[str]) -> str:
    """The distinct captions, in order, joined with "; ". A caption is dropped when its words are
    all in one already kept (BLIP's "a man standing in a kitchen" then "a man in a kitchen")."""
    kept: list[tuple[str, set[str]]] = []
    for caption in captions:
        text = " ".join(caption.split()).strip(" .")
        words = set(text.lower().split())
        if not words or any(words <= seen for _, seen in kept):
            continue
        kept = [(t, w) for t, w in kept if not w < words]  # a later, fuller caption replaces a subset
        kept.append((text, words))
    return "; ".join(t for t, _ in kept)
