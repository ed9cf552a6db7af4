"""Configuration: one frozen dataclass per concern, loadable from TOML. Unknown keys raise."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import tomllib

from egorag.devices import cpu_cores
from egorag.errors import ConfigError

BadMediaPolicy = Literal["error", "skip"]


def _at_least(obj: Any, minimum: float, *names: str) -> None:
    """Each named field of ``obj`` must be a finite number >= ``minimum`` (NaN never is)."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (minimum <= value < math.inf):
            raise ConfigError(f"[{obj.section}] {name} = {value!r}; it must be a number of at least {minimum}")


def _above(obj: Any, minimum: float, *names: str) -> None:
    """Each named field of ``obj`` must be a finite number > ``minimum``."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (minimum < value < math.inf):
            raise ConfigError(f"[{obj.section}] {name} = {value!r}; it must be a number above {minimum}")


@dataclass(frozen=True)
class SceneConfig:
    """How a video is cut into scenes."""

    detector: Literal["content", "adaptive"] = "content"
    threshold: float = 27.0  # ContentDetector threshold (AdaptiveDetector: adaptive_threshold 3.0)
    min_scene_s: float = 1.0  # shorter scenes merge into a neighbour
    max_scene_s: float = 30.0  # longer scenes are split into equal windows
    analysis_width: int = 256  # frames are decoded at this width for shot detection
    # how spoken words join scenes: "sentence" keeps a sentence the picture cuts into (at most
    # 3 s of it across the cut) with the scene holding most of it; "word": each word to the
    # scene holding its midpoint
    words_by: Literal["sentence", "word"] = "sentence"
    section: ClassVar[str] = "scenes"

    def __post_init__(self):
        _above(self, 0, "threshold", "max_scene_s")
        _at_least(self, 0, "min_scene_s")
        _at_least(self, 16, "analysis_width")
        if self.min_scene_s > self.max_scene_s:
            raise ConfigError(f"[scenes] min_scene_s = {self.min_scene_s} is above max_scene_s = {self.max_scene_s}")


@dataclass(frozen=True)
class AsrConfig:
    """Speech recognition with faster-whisper."""

    model: str = "tiny.en"  # size alias, local CTranslate2 directory, or hub id
    device: str = "auto"
    compute_type: str = "default"  # int8 on CPU, float16 on CUDA
    language: str | None = None
    beam_size: int = 5
    vad: bool = True
    window_s: float = 300.0  # a long track is transcribed this many seconds at a time: memory stays flat
    section: ClassVar[str] = "asr"

    def __post_init__(self):
        _at_least(self, 1, "beam_size")
        _at_least(self, 30, "window_s")  # windows overlap by 10 s (egorag.asr.OVERLAP_S)


@dataclass(frozen=True)
class TextConfig:
    """Sentence embeddings of transcripts and captions."""

    encoder: str = "sentence-transformers"  # registry name (see egorag.encoders.list_encoders())
    model: str = "all-mpnet-base-v2"  # alias ("all-MiniLM-L6-v2": smaller, faster, ranks worse), local directory, or hub id
    device: str = "auto"
    batch_size: int = 64
    # single queries: "auto" uses ONNX Runtime on the CPU when the model can be exported (faster,
    # and a search process needs no torch); "torch" keeps them on PyTorch; "onnx" requires it
    query_runtime: Literal["auto", "torch", "onnx"] = "auto"
    # the ONNX query graph's matrix weights: "int8" (8-bit blocks, checked against PyTorch) or "float32"
    query_precision: Literal["int8", "float32"] = "int8"
    # what a scene's ``text`` vector embeds: its transcript, caption and screen text "joined" by
    # spaces, or "labelled" as the EgoRAG design has it ("Transcript: ... Visuals: ... On screen: ...")
    scene_text: Literal["joined", "labelled"] = "joined"
    section: ClassVar[str] = "text"

    def __post_init__(self):
        _at_least(self, 1, "batch_size")


@dataclass(frozen=True)
class VisualConfig:
    """CLIP keyframe embeddings."""

    model: str = "ViT-B-32"
    pretrained: str = "laion2b_s34b_b79k"  # tag, local checkpoint path, or '' for hf-hub: models
    device: str = "auto"
    fps: float = 1.0
    max_frames: int = 32  # per scene
    max_keyframes: int = 8
    reducer: Literal["kmeans", "bipartite"] = "kmeans"
    thumbnail_px: int = 160
    batch_size: int = 64
    section: ClassVar[str] = "visual"

    def __post_init__(self):
        _above(self, 0, "fps")
        _at_least(self, 1, "max_frames", "max_keyframes", "batch_size")
        _at_least(self, 16, "thumbnail_px")


@dataclass(frozen=True)
class AudioConfig:
    """CLAP audio embeddings."""

    model: str = "laion/clap-htsat-unfused"  # hub id or local directory
    device: str = "auto"
    max_seconds: float = 10.0  # audio window fed to CLAP per scene (centre of the scene)
    section: ClassVar[str] = "audio"

    def __post_init__(self):
        _above(self, 0, "max_seconds")


@dataclass(frozen=True)
class AudioEventsConfig:
    """Audio event tags (AudioSet labels from an AST classifier) per scene."""

    model: str = "MIT/ast-finetuned-audioset-10-10-0.4593"  # hub id or local directory
    device: str = "auto"
    threshold: float = 0.25  # a label is kept when its (sigmoid) score is at least this
    top_k: int = 5  # at most this many labels per scene
    max_seconds: float = 10.0  # audio classified per scene (centre of the scene; AST reads ~10 s)
    section: ClassVar[str] = "audio_events"

    def __post_init__(self):
        _above(self, 0, "max_seconds")
        _at_least(self, 0, "threshold")
        _at_least(self, 1, "top_k")


@dataclass(frozen=True)
class DiarizeConfig:
    """Who speaks when (speaker diarization), for speaker labels on words and scenes."""

    model: str = "pyannote/speaker-diarization-community-1"  # pyannote pipeline: hub id or local directory
    device: str = "auto"
    min_speech_s: float = 0.5  # a speaker is listed on a scene when they speak at least this long in it
    section: ClassVar[str] = "diarize"

    def __post_init__(self):
        _at_least(self, 0, "min_speech_s")


@dataclass(frozen=True)
class OcrConfig:
    """On-screen text (RapidOCR) over frames where the picture changed."""

    period_s: float = 2.0  # at most one frame read every this many seconds (up to 8 s while reads find no text)
    change: float = 0.02  # a frame is read when this share of its cells changed a lot since the last one read (0-1)
    max_side: int = 640  # the text detector sees frames this large at most
    min_score: float = 0.6  # lines recognised with less confidence are dropped
    section: ClassVar[str] = "ocr"

    def __post_init__(self):
        _above(self, 0, "period_s")
        _at_least(self, 0, "change", "min_score")
        _at_least(self, 64, "max_side")


@dataclass(frozen=True)
class IngestConfig:
    """How much of the encoding runs side by side."""

    # videos encoded at once, and speech recognised on as many threads (CTranslate2 releases the
    # GIL); 0: one per core, at most 8
    workers: int = 0
    section: ClassVar[str] = "ingest"

    def __post_init__(self):
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"[ingest] workers = {self.workers!r}; it must be a whole number of at least 0 (0: one per core)")

    def resolved_workers(self) -> int:
        """``workers``, or one per core (at most 8) when it is 0."""
        return self.workers or max(1, min(8, cpu_cores()))


@dataclass(frozen=True)
class CaptionConfig:
    """Scene captioning. ``captioner = ""`` disables it."""

    captioner: str = ""  # "blip" or "qwen2-vl"
    model: str = ""  # hub id or local directory; empty picks the captioner's default
    device: str = "auto"
    frames: int = 5  # per scene: each captioned (BLIP), or all in one prompt (Qwen2-VL)
    max_new_tokens: int = 40
    section: ClassVar[str] = "caption"

    def __post_init__(self):
        _at_least(self, 1, "frames", "max_new_tokens")


@dataclass(frozen=True)
class RetrievalConfig:
    """How per-modality similarities become one ranking."""

    fusion: Literal["weighted", "rrf"] = "weighted"
    weights: dict[str, float] = field(
        default_factory=lambda: {"text": 1.0, "caption": 0.5, "visual": 1.0, "audio": 0.5, "bm25": 0.2}
    )
    prior_weight: float = 0.1  # chosen with benchmarks/tune_fusion.py on the dev set's tune split
    top_videos: int = 20
    candidates: int = 100  # per-modality scene candidates before fusion
    # with a fused sketch (large stores): scenes drawn by approximate fused score,
    # and how many of them (with the top videos' scenes) are re-scored exactly
    fused_pool: int = 3000
    fused_candidates: int = 300
    merge_adjacent: bool = True
    rrf_k: int = 60
    faiss_index: Literal["auto", "flat", "ivf", "hnsw"] = "auto"
    section: ClassVar[str] = "retrieval"

    def __post_init__(self):
        _at_least(self, 0, "prior_weight")
        _at_least(self, 1, "top_videos", "candidates", "fused_pool", "fused_candidates", "rrf_k")
        for name, weight in self.weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (0 <= weight < math.inf):
                raise ConfigError(f"[retrieval.weights] {name} = {weight!r}; it must be a number of at least 0")


@dataclass(frozen=True)
class AnswerConfig:
    """The LLM that answers questions from retrieved scenes (``egorag ask``)."""

    llm: Literal["openai", "transformers", "none"] = "openai"  # "none": prompt and evidence only
    endpoint: str = "http://127.0.0.1:8000/v1"  # any OpenAI-compatible server (vLLM, llama.cpp, Ollama)
    model: str = "default"  # served model name, or a local transformers chat model directory
    api_key_env: str = "OPENAI_API_KEY"  # read from the environment when set; never stored
    device: str = "auto"
    k: int = 8  # scenes retrieved as evidence
    context_tokens: int = 3000  # budget for the evidence in the prompt
    max_answer_tokens: int = 400
    temperature: float = 0.0
    timeout_s: float = 120.0
    section: ClassVar[str] = "answer"

    def __post_init__(self):
        _at_least(self, 1, "k", "context_tokens", "max_answer_tokens")
        _at_least(self, 0, "temperature")
        _above(self, 0, "timeout_s")


@dataclass(frozen=True)
class EngineConfig:
    """Everything an :class:`egorag.Engine` needs, grouped by concern.

    ``modalities = "auto"`` enables every modality whose model loads here and reports the rest as
    disabled; an explicit list makes each listed modality required.
    """

    modalities: tuple[str, ...] | Literal["auto"] = "auto"
    scenes: SceneConfig = field(default_factory=SceneConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    text: TextConfig = field(default_factory=TextConfig)
    visual: VisualConfig = field(default_factory=VisualConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    ocr: OcrConfig = field(default_factory=OcrConfig)
    audio_events: AudioEventsConfig = field(default_factory=AudioEventsConfig)
    diarize: DiarizeConfig = field(default_factory=DiarizeConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    answer: AnswerConfig = field(default_factory=AnswerConfig)
    on_bad_media: BadMediaPolicy = "error"
    low_memory: bool = False  # index stage by stage, one heavy model in memory at a time


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a (TOML) dict, recursing into nested dataclasses.

    Unknown keys raise :class:`ConfigError` listing the valid ones.
    """
    hints = typing.get_type_hints(cls)
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - valid
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {sorted(unknown)} in [{where or 'root'}]; valid: {sorted(valid)}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        sub = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"[{sub}] must be a table, got {type(value).__name__}")
            kwargs[name] = from_dict(hint, value, sub)
        else:
            kwargs[name] = _check_value(hint, value, sub)
    return cls(**kwargs)


def _check_value(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where} = {value!r}; expected one of {typing.get_args(hint)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _check_value(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where} = {value!r} matches none of: {'; '.join(errors)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{where} must be empty")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def load_config(path: str | Path) -> EngineConfig:
    """Load an :class:`EngineConfig` from a TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return from_dict(EngineConfig, data)
