"""X-CLIP video embeddings (``[visual] model = "xclip"``; transformers ``XCLIPModel``, default
``microsoft/xclip-base-patch16``).

A scene's vector is X-CLIP's video embedding of ``clip_frames`` (8) of its sampled frames,
chosen by k-means over the frames (their pixels: X-CLIP's vision tower mixes the frames of a clip,
so a frame has no embedding of its own), in time order, repeated when a scene has fewer. That
vector is also the scene's one keyframe. Text queries go through X-CLIP's text tower into the
same space; an image query is embedded as a still video.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from egorag.config import VisualConfig
from egorag.devices import resolve_device
from egorag.encoders.base import check_output, l2_normalize
from egorag.encoders.registry import register_encoder
from egorag.weights import check_reachable, from_pretrained, resolve_model

logger = logging.getLogger("egorag")

DEFAULT_MODEL = "microsoft/xclip-base-patch16"
HOW = (
    "download microsoft/xclip-base-patch16 on a connected machine (save_pretrained) and set [visual] "
    "pretrained to that directory, or put it under $EGORAG_MODELS_DIR/microsoft/xclip-base-patch16"
)


def xclip_weights(config: VisualConfig) -> str:
    """The weights X-CLIP loads: ``[visual] pretrained`` unless it is still open_clip's tag."""
    return config.pretrained if config.pretrained and config.pretrained != VisualConfig.pretrained else DEFAULT_MODEL


@register_encoder("xclip")
class XClipEncoder:
    modality = "visual"
    text_queries = True

    def __init__(self, config: VisualConfig = VisualConfig()):
        resolved = resolve_model(xclip_weights(config))
        check_reachable("X-CLIP model", resolved, HOW)  # before transformers is imported
        from transformers import XCLIPModel, XCLIPProcessor

        self.device = resolve_device(config.device)
        processor, model = from_pretrained("X-CLIP model", resolved, HOW, XCLIPProcessor, XCLIPModel)
        self._setup(model, processor.image_processor, processor.tokenizer, xclip_weights(config), config)
        logger.info("loaded X-CLIP %s from %s on %s", self.checkpoint, resolved.source, self.device)

    @classmethod
    def from_model(cls, model, image_processor, tokenizer, checkpoint: str, config: VisualConfig = VisualConfig()):
        """Wrap an already-built XCLIPModel (tests build tiny ones from an XCLIPConfig)."""
        self = cls.__new__(cls)
        self.device = "cpu"
        self._setup(model, image_processor, tokenizer, checkpoint, config)
        return self

    def _setup(self, model, image_processor, tokenizer, checkpoint: str, config: VisualConfig) -> None:
        import torch

        self._torch = torch
        self._model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.config = config
        self.checkpoint = checkpoint
        self.dim = int(model.config.projection_dim)
        vision = model.config.vision_config
        self.image_size = int(vision.image_size)
        self.clip_frames = int(vision.num_frames)  # the cross-frame transformer's fixed length
        self.mean = torch.tensor(image_processor.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(image_processor.image_std, dtype=torch.float32).view(1, 3, 1, 1)

    def _pixels(self, frames: np.ndarray):
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        return ((x - self.mean) / self.std).to(self.device)

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """Each uint8 frame (n, S, S, 3), resized and centre-cropped to S, embedded as a still
        video (X-CLIP's vision tower mixes the frames of a clip: a frame has no embedding alone)."""
        vectors = [self.encode_clip(f[None]) for f in np.asarray(frames)]
        return np.stack(vectors) if vectors else np.zeros((0, self.dim), dtype=np.float32)

    def load_for_documents(self) -> None:
        """Loaded whole at construction: nothing more for documents."""

    def encode_clip(self, frames: np.ndarray) -> np.ndarray:
        """One video embedding of up to ``clip_frames`` uint8 frames in time order (repeated,
        evenly, to ``clip_frames`` when fewer)."""
        if len(frames) == 0:
            raise ValueError("a clip needs at least one frame")
        take = np.linspace(0, len(frames) - 1, self.clip_frames).round().astype(int)
        pixels = self._pixels(np.asarray(frames)[take]).unsqueeze(0)
        with self._torch.inference_mode():
            out = self._model.get_video_features(pixel_values=pixels).pooler_output.float().cpu().numpy()
        return check_output(self, l2_normalize(out), 1)[0]

    def encode_images(self, images: Sequence) -> np.ndarray:
        """PIL images (image queries), each embedded as a still video."""
        from egorag.ingest.frames import square

        vectors = [self.encode_clip(square(np.asarray(im.convert("RGB")), self.image_size)[None]) for im in images]
        return np.stack(vectors) if vectors else np.zeros((0, self.dim), dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self._model.get_text_features(**tokens).pooler_output.float().cpu().numpy()
        return check_output(self, l2_normalize(out), len(texts))

    encode_documents = encode_frames

    @property
    def logit_scale(self) -> float:
        return float(self._model.logit_scale.exp().item())
