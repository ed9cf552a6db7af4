"""Registry of encoder families: ``@register_encoder("name")`` on a class, ``create_encoder`` to build."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_REGISTRY: dict[str, type] = {}

#: Built-in families and the module that registers each; imported lazily on first use so that
#: ``egorag --help`` never pays for torch.
_BUILTIN_MODULES = {
    "sentence-transformers": "egorag.encoders.sentence",
    "open-clip": "egorag.encoders.clip",
    "clap": "egorag.encoders.clap",
    "xclip": "egorag.encoders.xclip",
    "qwen2-vl": "egorag.encoders.qwen_vision",
}


def register_encoder(name: str) -> Callable[[type[T]], type[T]]:
    def decorator(cls: type[T]) -> type[T]:
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} is already registered (by {_REGISTRY[name]!r})")
        cls.name = name  # type: ignore[attr-defined]
        _REGISTRY[name] = cls
        return cls

    return decorator


def unregister_encoder(name: str) -> None:
    _REGISTRY.pop(name, None)


def list_encoders() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))


def get_encoder_class(name: str) -> type:
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; available: {list_encoders()}") from None


def create_encoder(name: str, **kwargs: Any) -> Any:
    return get_encoder_class(name)(**kwargs)
