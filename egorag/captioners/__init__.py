"""Pluggable scene captioners: ``create_captioner(CaptionConfig)`` picks one by name."""

from __future__ import annotations

import importlib
from typing import Any

from egorag.config import CaptionConfig
from egorag.errors import ConfigError

#: name -> (module, class)
CAPTIONERS = {
    "blip": ("egorag.captioners.blip", "BlipCaptioner"),
    "qwen2-vl": ("egorag.captioners.qwen", "Qwen2VLCaptioner"),
}


def create_captioner(config: CaptionConfig) -> Any:
    if config.captioner not in CAPTIONERS:
        raise ConfigError(f"unknown captioner {config.captioner!r}; choose from {sorted(CAPTIONERS)}")
    module, cls = CAPTIONERS[config.captioner]
    return getattr(importlib.import_module(module), cls)(config)
