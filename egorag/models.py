"""Which modalities run, with which models. ``modalities="auto"`` enables every modality whose
weights load here and reports the others as disabled with the reason and the way to enable them;
an explicitly listed modality that cannot load raises :class:`ModalityUnavailableError`."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from egorag.config import EngineConfig
from egorag.errors import ConfigError, ModalityUnavailableError, ModelLoadError
from egorag.schema import MODALITIES, EncoderFingerprint
from egorag.weights import ResolvedModel

logger = logging.getLogger("egorag")

#: Everything :func:`load_models` can enable: the vector modalities plus speech recognition,
#: on-screen text (whose words join the scene text, so they need no vector column of their own),
#: audio event tags and speaker diarization (labels on scenes and words).
COMPONENTS = ("asr", "ocr") + MODALITIES + ("audio_events", "diarize")


@dataclass(frozen=True)
class ModalityStatus:
    name: str
    enabled: bool
    detail: str  # the model when enabled; why not, and how to enable it, when disabled

    def short(self) -> str:
        """One short line: the model when on; the fix alone (its "To enable: ..." part) when off.
        ``detail`` has the loader's full reason."""
        if self.enabled:
            return self.detail.split(" (found:")[0]
        fix = self.detail.rpartition("To enable: ")[2] if "To enable: " in self.detail else self.detail
        return f"to enable: {fix}" if "To enable: " in self.detail else fix


@dataclass
class ModelSet:
    """The loaded models of one engine. ``None`` where a component is disabled."""

    transcriber: Any = None
    ocr: Any = None  # reads on-screen text (egorag.ocr.TextReader)
    text: Any = None  # encodes both the ``text`` and the ``caption`` modality
    visual: Any = None
    audio: Any = None
    captioner: Any = None
    audio_events: Any = None  # tags scenes with audio events (egorag.audio_events.AudioTagger)
    diarizer: Any = None  # tells speakers apart (an egorag.diarize.Diarizer)
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


def fingerprints(encoders: Mapping[str, Any]) -> dict[str, EncoderFingerprint]:
    """What made each vector modality (``ModelSet.encoders()``): the store records and checks it."""
    return {m: EncoderFingerprint(m, e.name, e.checkpoint, int(e.dim)) for m, e in encoders.items()}


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

    return Transcriber(config.asr, workers=config.ingest.resolved_workers())


def _load_ocr(config: EngineConfig) -> Any:
    from egorag.ocr import ScreenReader

    return ScreenReader(config.ocr)


def _load_text(config: EngineConfig) -> Any:
    from egorag.encoders.registry import create_encoder

    c = config.text
    return create_encoder(c.encoder, model=c.model, device=c.device, batch_size=c.batch_size, query_runtime=c.query_runtime,
                         query_precision=c.query_precision)


def _visual_family(config: EngineConfig) -> str:
    """The encoder family ``[visual] model`` names: an open_clip architecture unless a clip model."""
    return config.visual.model if config.visual.model in ("xclip", "qwen2-vl") else "open-clip"


def _load_visual(config: EngineConfig) -> Any:
    from egorag.encoders.registry import create_encoder

    return create_encoder(_visual_family(config), config=config.visual)


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


def _load_audio_events(config: EngineConfig) -> Any:
    from egorag.audio_events import AudioTagger

    return AudioTagger(config.audio_events)


def _load_diarizer(config: EngineConfig) -> Any:
    from egorag.diarize import PyannoteDiarizer

    return PyannoteDiarizer(config.diarize)


_LOADERS: dict[str, tuple[str, Callable[[EngineConfig], Any]]] = {
    # component: (ModelSet attribute, loader); each loader's ModelLoadError says how to enable it
    "asr": ("transcriber", _load_transcriber),
    "ocr": ("ocr", _load_ocr),
    "text": ("text", _load_text),
    "visual": ("visual", _load_visual),
    "audio": ("audio", _load_audio),
    "caption": ("captioner", _load_captioner),
    "audio_events": ("audio_events", _load_audio_events),
    "diarize": ("diarizer", _load_diarizer),
}


def _weights_of(config: EngineConfig, name: str) -> tuple[str, Any, str]:
    """(what, resolution record, how to enable) of component ``name``'s weights, found without
    importing any model library."""
    from egorag.weights import resolve_model

    if name == "asr":
        return "whisper model", resolve_model(config.asr.model), "pass a local CTranslate2 directory as asr.model"
    if name == "text":
        return "text model", resolve_model(config.text.model), "set [text] model to a local sentence-transformers directory"
    if name == "ocr":
        from egorag.ocr import HOW

        if importlib.util.find_spec("rapidocr") is None:
            raise ModelLoadError(f"rapidocr is not installed. To enable: {HOW}")
        spec = importlib.util.find_spec("rapidocr")
        return "RapidOCR models", ResolvedModel("rapidocr", str(Path(spec.origin).parent / "models"), "package", ()), HOW
    if name == "visual" and config.visual.model == "xclip":
        from egorag.encoders.xclip import HOW, xclip_weights

        return "X-CLIP model", resolve_model(xclip_weights(config.visual)), HOW
    if name == "visual" and config.visual.model == "qwen2-vl":
        from egorag.encoders.qwen_vision import HOW, qwen_weights

        return "Qwen2-VL model", resolve_model(qwen_weights(config.visual)), HOW
    if name == "visual":
        from egorag.encoders.clip import HOW, _resolve

        model, pretrained, resolved = _resolve(config.visual)
        if pretrained is None and not model.startswith(("hf-hub:", "local-dir:")):
            raise ModelLoadError(f"no pretrained weights configured for open_clip {model}. To enable: {HOW}")
        return f"open_clip {model} weights", resolved, HOW
    if name == "audio":
        from egorag.encoders.clap import HOW

        return "CLAP model", resolve_model(config.audio.model), HOW
    if name == "audio_events":
        from egorag.audio_events import HOW

        return "AST audio event model", resolve_model(config.audio_events.model), HOW
    if name == "diarize":
        from egorag.diarize import HOW, pyannote_installed

        if not pyannote_installed():
            raise ModelLoadError(f"pyannote.audio is not installed. To enable: {HOW}")
        return "pyannote diarization pipeline", resolve_model(config.diarize.model), HOW
    if not config.caption.captioner:
        _load_captioner(config)  # raises: says how to enable it
    from egorag.captioners import CAPTIONERS

    module, cls = CAPTIONERS[config.caption.captioner]
    captioner = getattr(importlib.import_module(module), cls)
    return f"{captioner.name} captioner", resolve_model(config.caption.model or captioner.default_model), captioner.how


def _reach(config: EngineConfig, name: str) -> str:
    """What a component's status adds about which queries it answers (the encoder class says
    whether it reads text; importing its module loads no model library)."""
    from egorag.encoders.registry import get_encoder_class

    if name == "visual" and not get_encoder_class(_visual_family(config)).text_queries:
        return ": image queries and more-like-this only (no text tower: text queries do not search it)"
    return ""


def probe_models(config: EngineConfig) -> dict[str, ModalityStatus]:
    """Which components' weights are found here, in a fraction of a second: none is loaded. A
    component is on with where its weights are, or off with why and how to enable it; whether
    they also load is what :func:`load_models` tells (``egorag status --load``)."""
    from egorag.weights import check_reachable

    required = requested(config)
    out = {}
    for name in COMPONENTS:
        if required is not None and name not in required:
            out[name] = ModalityStatus(name, False, "not in the configured modalities")
            continue
        if name == "text" and config.text.encoder != "sentence-transformers":
            out[name] = ModalityStatus(name, True, f"encoder {config.text.encoder!r} (not probed; --load loads it)")
            continue
        try:
            what, resolved, how = _weights_of(config, name)
            check_reachable(what, resolved, how)
        except ModelLoadError as exc:
            out[name] = ModalityStatus(name, False, str(exc))
            continue
        where = resolved.location if resolved.source != "hub" else f"hub id {resolved.location!r}, in the local cache"
        out[name] = ModalityStatus(name, True, f"{resolved.name}{_reach(config, name)} (found: {where}; not loaded)")
    return out


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
        models.status[name] = ModalityStatus(name, True, f"{getattr(model, 'checkpoint', None) or getattr(model, 'model_name', name)}"
                                                         f"{_reach(config, name)}")
    return models
