"""egorag: multimodal video retrieval. Public API (imported lazily, so importing egorag is cheap)."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Engine": "egorag.engine",
    "IndexReport": "egorag.reports",
    "CheckReport": "egorag.reports",
    "EngineConfig": "egorag.config",
    "load_config": "egorag.config",
    "Scene": "egorag.schema",
    "Video": "egorag.schema",
    "SceneFilter": "egorag.filters",
    "Hit": "egorag.hits",
    "SearchResult": "egorag.hits",
    "parse_time": "egorag.times",
    "answer": "retrieval.answer",
    "create_chat_model": "retrieval.answer",
    "OpenAIChatClient": "retrieval.answer",
    "EgoragError": "egorag.errors",
    "ConfigError": "egorag.errors",
    "MediaError": "egorag.errors",
    "NotFoundError": "egorag.errors",
    "LLMError": "egorag.errors",
    "QueryError": "egorag.errors",
    "ModelLoadError": "egorag.errors",
    "ModalityUnavailableError": "egorag.errors",
    "IndexMismatchError": "egorag.errors",
    "DeviceError": "egorag.errors",
    "MissingExtraError": "egorag.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'egorag' has no attribute {name!r}")
