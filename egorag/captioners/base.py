"""What a captioner is, and the process-wide cache that lets components share one loaded model."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

_SHARED: dict[tuple, Any] = {}
_LOCK = threading.Lock()


@runtime_checkable
class Captioner(Protocol):
    name: str
    checkpoint: str

    def caption(self, frames: Sequence[Any]) -> str:
        """One caption for a scene from its frames (PIL images, in time order)."""


def shared_model(key: tuple, load: Callable[[], Any]) -> Any:
    """Load once per ``key`` (e.g. class, path, device) and share: when captioning and another
    component use the same checkpoint, it is in memory once."""
    with _LOCK:
        if key not in _SHARED:
            _SHARED[key] = load()
        return _SHARED[key]


def release_shared(key: tuple | None = None) -> None:
    """Free shared models (all, or one), e.g. between stages where memory is tight."""
    with _LOCK:
        if key is None:
            _SHARED.clear()
        else:
            _SHARED.pop(key, None)
