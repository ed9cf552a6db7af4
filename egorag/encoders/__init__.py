"""Encoders: one module per model family, registered by name."""

from egorag.encoders.base import Encoder, fingerprint_of, l2_normalize
from egorag.encoders.registry import create_encoder, list_encoders, register_encoder

__all__ = ["Encoder", "create_encoder", "fingerprint_of", "l2_normalize", "list_encoders", "register_encoder"]
