"""Low-memory indexing (``low_memory = true``): each stage's model is loaded just before its
stage and freed after it, so one heavy model is in memory at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from egorag.config import EngineConfig
from egorag.models import ModelSet


class ModelSwap:
    """Low-memory policy: loads one component's model for its stage and frees it afterwards,
    recording what each loaded model is (status, fingerprint) for the report and the store."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.status: dict = {}
        self.encoders: dict[str, object] = {}  # modality -> what made its vectors (fingerprint only)

    @contextmanager
    def stage(self, models: ModelSet, component: str) -> Iterator[None]:
        from egorag.models import component_attribute, load_models

        attr = component_attribute(component)
        loaded = load_models(self.config, (component,))
        self.status.update(loaded.status)
        setattr(models, attr, getattr(loaded, attr))
        try:
            yield
        finally:
            model = getattr(models, attr)
            if model is not None and component in ("text", "visual", "audio"):
                self.encoders[component] = _Fingerprintable(model)
            if model is not None and component == "caption":
                self.encoders["caption"] = None  # filled with the text encoder below
            if component == "text" and "caption" in self.encoders and model is not None:
                self.encoders["caption"] = self.encoders["text"]
            setattr(models, attr, None)
            del model, loaded
            if component == "caption" or (component == "visual" and not self._captioner_shares_visual()):
                from egorag.captioners.base import release_shared

                release_shared()  # a model shared by the vision tower and the captioner goes with its last stage
            _free_memory()

    def _captioner_shares_visual(self) -> bool:
        """Whether the caption stage reuses the visual stage's model (Qwen2-VL as both)."""
        return self.config.visual.model == "qwen2-vl" and self.config.caption.captioner == "qwen2-vl"


@dataclass(frozen=True)
class _Fingerprintable:
    """What a freed encoder leaves behind: enough to write the store's fingerprint."""

    name: str
    checkpoint: str
    dim: int

    def __init__(self, encoder):
        object.__setattr__(self, "name", encoder.name)
        object.__setattr__(self, "checkpoint", encoder.checkpoint)
        object.__setattr__(self, "dim", int(encoder.dim))


def _free_memory() -> None:
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")  # a stage that used torch has imported it; don't import it here
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
