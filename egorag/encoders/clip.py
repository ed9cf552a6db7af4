"""open_clip visual encoder: keyframes (pre-cropped uint8 frames), images and query text.

Weights: a built-in architecture with a pretrained tag or a local checkpoint file, an ``hf-hub:``
id, or a ``local-dir:`` / plain directory with ``open_clip_config.json``. Weights that cannot be
loaded raise :class:`ModelLoadError`; random weights are never used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from egorag.config import VisualConfig
from egorag.devices import resolve_device
from egorag.encoders.base import check_output, l2_normalize
from egorag.encoders.registry import register_encoder
from egorag.weights import ResolvedModel, check_reachable, load_error, resolve_model

logger = logging.getLogger("egorag")

HOW = (
    "set [visual] pretrained to a local open_clip checkpoint file (e.g. open_clip_pytorch_model.bin "
    "for ViT-B-32 laion2b_s34b_b79k), put it under $EGORAG_MODELS_DIR/<pretrained>, or set "
    "[visual] model to a local-dir: folder with open_clip_config.json"
)


def _resolve(config: VisualConfig) -> tuple[str, str | None, ResolvedModel]:
    """(model_name, pretrained argument, resolution record) for open_clip.create_model."""
    model = config.model
    if Path(model).expanduser().is_dir():
        model = f"local-dir:{Path(model).expanduser()}"
    if model.startswith(("hf-hub:", "local-dir:")):
        return model, None, ResolvedModel(model, model, "hub" if model.startswith("hf-hub:") else "path", (model,))
    if not config.pretrained:
        raise_missing = ResolvedModel(model, "", "hub", (f"{model} with no pretrained weights",))
        return model, None, raise_missing
    resolved = resolve_model(config.pretrained)
    return model, resolved.location, resolved


@contextmanager
def _open_clip_logs_as_debug():
    """open_clip logs a failed download as an ERROR on the root logger, then raises. The error
    raised here says the same, with what to do, and a default run reports the modality as off:
    so open_clip's own records go to egorag's logger at debug level instead."""

    class ToDebug(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if "open_clip" not in record.pathname:
                return True
            logger.debug("open_clip: %s", record.getMessage())
            return False

    root, quiet = logging.getLogger(), ToDebug()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


@register_encoder("open-clip")
class OpenClipEncoder:
    modality = "visual"
    text_queries = True
    clip_frames = None  # a scene's vector is its keyframes' mean (X-CLIP pools a clip instead)

    def __init__(self, config: VisualConfig = VisualConfig()):
        model_name, pretrained, resolved = _resolve(config)
        if pretrained is None and not model_name.startswith(("hf-hub:", "local-dir:")):
            raise load_error("open_clip weights for", resolved, ValueError("no pretrained weights configured"), HOW)
        check_reachable(f"open_clip {model_name} weights", resolved, HOW)  # before torch is imported
        import open_clip
        import torch

        self.config = config
        self.device = resolve_device(config.device)
        try:
            with _open_clip_logs_as_debug():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=pretrained, device=self.device, require_pretrained=True
                )
        except Exception as exc:  # download, file and config errors all mean "could not load"
            raise load_error(f"open_clip {model_name} weights", resolved, exc, HOW) from exc
        self._model = model.eval()
        self._torch = torch
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.checkpoint = f"{config.model}:{config.pretrained}" if pretrained else config.model
        self.dim = int(model.text_projection.shape[1] if hasattr(model, "text_projection") and model.text_projection is not None else model.visual.output_dim)
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        self.mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD)).view(1, 3, 1, 1)
        logger.info("loaded open_clip %s on %s", self.checkpoint, self.device)

    @classmethod
    def from_model(cls, model, preprocess, tokenizer, checkpoint: str, config: VisualConfig = VisualConfig()):
        """Wrap an already-built open_clip model (tests build tiny ones from a config dict)."""
        import open_clip
        import torch

        self = cls.__new__(cls)
        self.config, self.device, self._torch = config, "cpu", torch
        self._model, self.preprocess, self.tokenizer = model.eval(), preprocess, tokenizer
        self.checkpoint = checkpoint
        self.dim = int(model.text_projection.shape[1])
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        self.mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD)).view(1, 3, 1, 1)
        return self

    def load_for_documents(self) -> None:
        """Loaded whole at construction: nothing more for documents."""

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """Embed uint8 frames of shape (n, S, S, 3), already resized and centre-cropped to S."""
        torch = self._torch
        if len(frames) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self.mean) / self.std
        with torch.inference_mode():
            out = self._model.encode_image(x.to(self.device)).float().cpu().numpy()
        return check_output(self, l2_normalize(out), len(frames))

    def encode_images(self, images: Sequence) -> np.ndarray:
        """Embed PIL images with open_clip's own preprocessing (image queries, classification)."""
        torch = self._torch
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        with torch.inference_mode():
            out = self._model.encode_image(x).float().cpu().numpy()
        return check_output(self, l2_normalize(out), len(images))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self.tokenizer(texts).to(self.device)
        with torch.inference_mode():
            out = self._model.encode_text(tokens).float().cpu().numpy()
        return check_output(self, l2_normalize(out), len(texts))

    encode_documents = encode_frames

    @property
    def logit_scale(self) -> float:
        scale = getattr(self._model, "logit_scale", None)
        return float(scale.exp().item()) if scale is not None else 100.0
