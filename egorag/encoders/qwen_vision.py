"""Qwen2-VL's vision tower as the visual modality (``[visual] model = "qwen2-vl"``; transformers
``Qwen2VLForConditionalGeneration``, default ``Qwen/Qwen2-VL-2B-Instruct``).

A scene's vector comes from ``clip_frames`` (8) of its sampled frames, picked by k-means over
their pixels as for X-CLIP, in time order, read by the vision tower as one video
(``max_pixels`` per frame). The scene vector is the tower's **first output token** (after the
patch merger, so its width is the language model's: 1536 for the 2B model, 3584 for the 7B),
L2-normalised: it is not pooled over the tokens, as the EgoRAG design has it.

This space has no text tower: text queries do not search it (the retriever skips an encoder
whose ``text_queries`` is False); image queries (through the same tower, as a still video) and
"more like this scene" do. When the captioner is Qwen2-VL with the same weights, the model is
loaded once and shared (:func:`egorag.captioners.base.shared_model`); in low-memory mode it is
freed after the caption stage. Weights load as bfloat16 on a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from egorag.config import VisualConfig
from egorag.devices import resolve_device
from egorag.encoders.base import check_output, l2_normalize
from egorag.encoders.registry import register_encoder
from egorag.weights import check_reachable, load_error, resolve_model

logger = logging.getLogger("egorag")

DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
HOW = (
    "save Qwen/Qwen2-VL-2B-Instruct (or -7B-Instruct) with save_pretrained on a connected machine and set [visual] "
    "pretrained to that directory, or put it under $EGORAG_MODELS_DIR/Qwen/Qwen2-VL-2B-Instruct"
)
CLIP_FRAMES = 8
IMAGE_SIZE = 336  # the square crop a sampled frame is kept at (24 x 24 patches of 14 px)
MAX_PIXELS = 336 * 336  # per frame, what the vision tower reads at most


def qwen_weights(config: VisualConfig) -> str:
    """The weights the tower loads: ``[visual] pretrained`` unless it is still open_clip's tag."""
    return config.pretrained if config.pretrained and config.pretrained != VisualConfig.pretrained else DEFAULT_MODEL


@register_encoder("qwen2-vl")
class QwenVisionEncoder:
    modality = "visual"
    text_queries: ClassVar[bool] = False  # no text tower: text queries do not search this space
    clip_frames = CLIP_FRAMES
    image_size = IMAGE_SIZE

    def __init__(self, config: VisualConfig = VisualConfig()):
        from egorag.captioners.base import shared_model
        from egorag.captioners.qwen import load_qwen2vl

        resolved = resolve_model(qwen_weights(config))
        check_reachable("Qwen2-VL model", resolved, HOW)  # before transformers is imported
        self.device = resolve_device(config.device)
        try:
            # the captioner's key: one model in memory when both use these weights
            model, processor = shared_model(("qwen2-vl", resolved.location, self.device),
                                            lambda: load_qwen2vl(resolved.location, resolved.is_local, self.device))
        except Exception as exc:  # hub, file and config errors all mean "could not load"
            raise load_error("Qwen2-VL model", resolved, exc, HOW) from exc
        self._setup(model, processor.video_processor, qwen_weights(config), config)
        logger.info("loaded the Qwen2-VL vision tower of %s from %s on %s", self.checkpoint, resolved.source, self.device)

    @classmethod
    def from_model(cls, model, video_processor, checkpoint: str, config: VisualConfig = VisualConfig()):
        """Wrap an already-built ``Qwen2VLForConditionalGeneration`` (tests build tiny ones)."""
        self = cls.__new__(cls)
        self.device = "cpu"
        self._setup(model.eval(), video_processor, checkpoint, config)
        return self

    def _setup(self, model, video_processor, checkpoint: str, config: VisualConfig) -> None:
        import torch

        self._torch = torch
        self._model = model
        self.video_processor = video_processor
        self.config = config
        self.checkpoint = checkpoint
        self.dim = int(model.config.text_config.hidden_size)

    def load_for_documents(self) -> None:
        """Loaded whole at construction: nothing more for documents."""

    def encode_clip(self, frames: np.ndarray) -> np.ndarray:
        """One vector of up to ``clip_frames`` uint8 frames (n, S, S, 3) in time order: the
        vision tower's first output token over them as one video."""
        if len(frames) == 0:
            raise ValueError("a clip needs at least one frame")
        frames = np.asarray(frames)
        if len(frames) % 2:  # the tower reads frames in pairs (temporal patches of 2)
            frames = np.concatenate([frames, frames[-1:]])
        inputs = self.video_processor(videos=[list(frames)], return_tensors="pt",
                                      size={"longest_edge": MAX_PIXELS, "shortest_edge": 56 * 56})
        with self._torch.inference_mode():
            out = self._model.model.get_video_features(pixel_values_videos=inputs["pixel_values_videos"].to(self.device),
                                                       video_grid_thw=inputs["video_grid_thw"].to(self.device))
        first = out.pooler_output[0][0].float().cpu().numpy()
        return check_output(self, l2_normalize(first[None]), 1)[0]

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """Each uint8 frame (n, S, S, 3) as a still video."""
        vectors = [self.encode_clip(f[None]) for f in np.asarray(frames)]
        return np.stack(vectors) if vectors else np.zeros((0, self.dim), dtype=np.float32)

    def encode_images(self, images: Sequence) -> np.ndarray:
        """PIL images (image queries), each read as a still video."""
        from egorag.ingest.frames import square

        return self.encode_frames(np.stack([square(np.asarray(im.convert("RGB")), self.image_size) for im in images])) if images \
            else np.zeros((0, self.dim), dtype=np.float32)

    encode_documents = encode_frames

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        raise TypeError("the Qwen2-VL vision tower has no text tower: text queries do not search its space")
