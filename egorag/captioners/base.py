"""What a captioner is, and the process-wide cache that lets components share one loaded model."""

from __future__ import annotations

import abc
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


class TransformersCaptioner(abc.ABC):
    """Shared loading for transformers captioners: a subclass names its default checkpoint and how
    to load the (model, processor) pair, and implements ``caption``."""

    name = ""
    default_model = ""
    how = ""

    def __init__(self, config):
        from egorag.devices import resolve_device
        from egorag.weights import check_reachable, load_error, resolve_model

        resolved = resolve_model(config.model or self.default_model)
        check_reachable(f"{self.name} captioner", resolved, self.how)  # before the model's libraries load
        self.config = config
        self.device = resolve_device(config.device)

        def load():
            model, processor = self._load(resolved.location, resolved.is_local)
            return model.to(self.device).eval(), processor  # the same pair whoever loads it first

        try:
            model, processor = shared_model((self.name, resolved.location, self.device), load)
        except Exception as exc:  # hub, file and config errors all mean "could not load"
            raise load_error(f"{self.name} captioner", resolved, exc, self.how) from exc
        self._setup(model, processor, config.model or self.default_model)

    @classmethod
    def from_model(cls, model, processor, checkpoint: str, config=None):
        """Wrap an already-built model (tests build tiny ones from a config)."""
        from egorag.config import CaptionConfig

        self = cls.__new__(cls)
        self.config, self.device = config or CaptionConfig(captioner=cls.name), "cpu"
        self._setup(model.eval(), processor, checkpoint)
        return self

    def _setup(self, model, processor, checkpoint: str) -> None:
        import torch

        self._torch, self._model, self._processor, self.checkpoint = torch, model, processor, checkpoint

    @abc.abstractmethod
    def _load(self, location: str, local_files_only: bool):
        """Load and return the (model, processor) pair from a local directory or hub id."""

    @abc.abstractmethod
    def caption(self, frames: Sequence[Any]) -> str:
        """One caption for a scene from its frames (PIL images, in time order)."""
