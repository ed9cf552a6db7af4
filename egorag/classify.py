"""Zero-shot classification with the CLIP text tower and prompt ensembling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from egorag.encoders.base import l2_normalize

TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a video frame showing a {}.",
    "a close-up photo of the {}.",
    "a blurry photo of a {}.",
)


@dataclass(frozen=True)
class Classification:
    item: str  # image path or scene id
    probabilities: dict[str, float]

    @property
    def label(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)

    def to_dict(self) -> dict:
        return {"item": self.item, "label": self.label, "probabilities": self.probabilities}


def label_embeddings(encoder, labels: Sequence[str], templates: Sequence[str] = TEMPLATES) -> np.ndarray:
    """One unit vector per label: the re-normalised mean of its prompts' text embeddings."""
    if not labels:
        raise ValueError("classification needs at least one label")
    prompts = [t.format(label) for label in labels for t in templates]
    vectors = encoder.encode_queries(prompts).reshape(len(labels), len(templates), -1)
    return l2_normalize(vectors.mean(axis=1))


def zero_shot(image_vectors: np.ndarray, label_vectors: np.ndarray, logit_scale: float) -> np.ndarray:
    """Softmax over labels of the scaled cosine similarities; rows sum to 1."""
    logits = logit_scale * (np.atleast_2d(image_vectors) @ label_vectors.T)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def classify(items: Sequence[str], image_vectors: np.ndarray, encoder, labels: Sequence[str]) -> list[Classification]:
    probs = zero_shot(image_vectors, label_embeddings(encoder, labels), encoder.logit_scale)
    return [Classification(item, {lab: float(p) for lab, p in zip(labels, row)}) for item, row in zip(items, probs)]
