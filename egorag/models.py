"""Which modalities run, with which models. ``modalities="auto"`` enables every modality whose
weights load here and reports the others as disabled with the reason and the way to enable them;
an explicitly listed modality that cannot load raises :class:`ModalityUnavailableError`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from egorag.config import EngineConfig
from egorag.errors import ConfigError, ModalityUnavailableError, ModelLoadError
from egorag.schema import MODALITIES

logger = logging.getLogger("egorag")

#: Everything :func:`load_models` can enable: the vector modalities plus speech recognition.
COMPONENTS = ("asr",) + MODALITIES


@dataclass(frozen=True)
class ModalityStatus:
    name: str
    enabled: bool
    detail: str  # the model when enabled; why not, and how to enable it, when disabled


@dataclass
class ModelSet:
    """The loaded models of one engine. ``None`` where a component is disabled."""

    transcriber: Any = None
    text: Any = None  # encodes both the ``text`` and the ``caption`` modality
    visual: Any = None
    audio: Any = None
    captioner: Any = None
    status: dict[str, ModalityStatus] = field(default_factory=dict)

    def encoders(self) -> dict[str, Any]:
        """Vector modality -> encoder that makes its vectors (and embeds queries into its space)."""
        out: dict[str, Any] = {}
        if self.text is not None:
            out["text"] = self.text
            if self.captioner is not None:
                out["caption"] = self.text
        if self.visual is not None:
            out["visual"] = self.visual
        if self.audio is not None:
            out["audio"] = self.audio
        return out


def requested(config: EngineConfig) -> tuple[str, ...] | None:
    """The explicitly required components, or ``None`` for auto."""
    if config.modalities == "auto":
        return None
    unknown = set(config.modalities) - set(COMPONENTS)
    if unknown:
        raise ConfigError(f"unknown modalities {sorted(unknown)}; choose from {COMPONENTS}")
    return tuple(config.modalities)


def _load_transcriber(config: EngineConfig) -> Any:
    from egorag.asr import Transcriber

    return Transcriber(config.asr)


def _load_text(config: EngineConfig) -> Any:
    from egorag.encoders.registry import create_encoder

    c = config.text
    return create_encoder(c.encoder, model=c.model, device=c.device, batch_size=c.batch_size, query_runtime=c.query_runtime)


def _load_visual(config: EngineConfig) -> Any:
    from egorag.encoders.registry import create_encoder

    return create_encoder("open-clip", config=config.visual)


def _load_audio(config: EngineConfig) -> Any:
    from egorag.encoders.registry import create_encoder

    return create_encoder("clap", config=config.audio)


def _load_captioner(config: EngineConfig) -> Any:
    if not config.caption.captioner:
        raise ModelLoadError(
            "no captioner configured. To enable: set [caption] captioner = \"blip\" or \"qwen2-vl\" "
            "and [caption] model to a local model directory"
        )
    from egorag.captioners import create_captioner

    return create_captioner(config.caption)


_LOADERS: dict[str, tuple[str, Callable[[EngineConfig], Any]]] = {
    # component: (ModelSet attribute, loader); each loader's ModelLoadError says how to enable it
    "asr": ("transcriber", _load_transcriber),
    "text": ("text", _load_text),
    "visual": ("visual", _load_visual),
    "audio": ("audio", _load_audio),
    "caption": ("captioner", _load_captioner),
}


def component_attribute(name: str) -> str:
    """The :class:`ModelSet` attribute that holds component ``name``'s model."""
    return _LOADERS[name][0]


def load_models(config: EngineConfig, components: tuple[str, ...] = COMPONENTS) -> ModelSet:
    """Load the models for ``components`` (e.g. only query-side ones for search)."""
    required = requested(config)
    models = ModelSet()
    for name in components:
        attr, loader = _LOADERS[name]
        if required is not None and name not in required:
            models.status[name] = ModalityStatus(name, False, "not in the configured modalities")
            continue
        try:
            model = loader(config)
        except ModelLoadError as exc:
            if required is not None:
                raise ModalityUnavailableError(f"modality {name!r} was requested but: {exc}") from exc
            models.status[name] = ModalityStatus(name, False, str(exc))
            logger.info("%s disabled: %s", name, exc)
            continue
        setattr(models, attr, model)
        models.status[name] = ModalityStatus(name, True, getattr(model, "checkpoint", None) or getattr(model, "model_name", name))
    return models
