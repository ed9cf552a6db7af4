"""Ingest stages as plain functions over typed records, and the loop that runs them per video.

probe -> segment (one decode pass: shot detection + frame sampling) -> transcribe -> caption ->
embed -> store. Each stage takes and returns dataclasses, so the stages can later run in parallel
or on other machines without change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from egorag.config import EngineConfig
from egorag.encoders.base import l2_normalize
from egorag.errors import MediaError
from egorag.ingest.decode import content_hash, decode_audio, decode_frames, probe
from egorag.ingest.scenes import ShotDetector, assign_words, build_scenes, join_words
from egorag.models import ModelSet
from egorag.schema import Keyframes, Scene, SceneSpan, Video, VideoInfo, Word, scene_id

logger = logging.getLogger("egorag")


@dataclass(frozen=True)
class Segmented:
    """Output of the decode pass: scene spans and, when the visual modality runs, keyframes."""

    info: VideoInfo
    spans: tuple[SceneSpan, ...]
    keyframes: tuple[Keyframes | None, ...] = ()
    caption_frames: tuple[list, ...] = ()  # per scene, PIL frames for the captioner


@dataclass(frozen=True)
class SceneTexts:
    transcripts: tuple[str, ...]
    captions: tuple[str, ...]


@dataclass
class StageTimes:
    """Wall seconds per stage, summed over the videos of one run."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


def segment(path: Path, info: VideoInfo, config: EngineConfig, models: ModelSet) -> Segmented:
    """One decode pass over the frames: shot detection, plus keyframe sampling for the visual model."""
    detector = ShotDetector(config.scenes, info.fps, info.width, info.height)
    consumers: list = [detector]
    sampler = None
    if models.visual is not None:
        from egorag.ingest.frames import FrameSampler

        sampler = FrameSampler(models.visual, config.visual, config.scenes.min_scene_s)
        consumers.append(sampler)
    collector = None
    if models.captioner is not None:
        from egorag.ingest.frames import CaptionFrames

        collector = CaptionFrames(period=min(1.0, config.scenes.min_scene_s), per_scene=config.caption.frames)
        consumers.append(collector)
    decoded = decode_frames(path, info, consumers)
    spans = build_scenes(detector.cut_times(), min(decoded, info.duration), config.scenes)
    keyframes = sampler.keyframes(spans) if sampler is not None else ()
    frames = collector.frames_for(spans) if collector is not None else ()
    return Segmented(info, tuple(spans), tuple(keyframes), tuple(frames))


def transcribe(path: Path, info: VideoInfo, models: ModelSet) -> list[Word]:
    if models.transcriber is None or not info.has_audio:
        return []
    return models.transcriber.transcribe(decode_audio(path, 16000))


def caption(segmented: Segmented, models: ModelSet) -> list[str]:
    if models.captioner is None:
        return [""] * len(segmented.spans)
    return [models.captioner.caption(frames) for frames in segmented.caption_frames]


def scene_texts(words: Sequence[Word], spans: Sequence[SceneSpan], captions: Sequence[str]) -> SceneTexts:
    transcripts = tuple(join_words(ws) for ws in assign_words(words, spans))
    return SceneTexts(transcripts, tuple(captions))


def embed_texts(texts: SceneTexts, models: ModelSet) -> dict[str, list[np.ndarray | None]]:
    """``text`` embeds transcript + caption; ``caption`` the caption alone. Empty text -> null."""
    out: dict[str, list[np.ndarray | None]] = {}
    if models.text is None:
        return out
    combined = [" ".join(p for p in (t, c) if p) for t, c in zip(texts.transcripts, texts.captions)]
    out["text"] = _embed_nonempty(models.text, combined)
    if models.captioner is not None:
        out["caption"] = _embed_nonempty(models.text, list(texts.captions))
    return out


def _embed_nonempty(encoder, texts: list[str]) -> list[np.ndarray | None]:
    keep = [i for i, t in enumerate(texts) if t.strip()]
    vectors = encoder.encode_documents([texts[i] for i in keep]) if keep else None
    out: list[np.ndarray | None] = [None] * len(texts)
    for row, i in enumerate(keep):
        out[i] = vectors[row]
    return out


def embed_audio(path: Path, segmented: Segmented, models: ModelSet) -> list[np.ndarray | None]:
    if models.audio is None or not segmented.info.has_audio:
        return [None] * len(segmented.spans)
    audio = decode_audio(path, models.audio.sample_rate)
    return models.audio.encode_scenes(audio, segmented.spans)


def global_vector(vectors: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """A video's global embedding for one modality: mean of its scenes' vectors, re-normalised."""
    present = [v for v in vectors if v is not None]
    return l2_normalize(np.mean(present, axis=0)) if present else None


def build_records(
    video_id: str, path: str, segmented: Segmented, texts: SceneTexts, vectors: dict[str, list]
) -> list[Scene]:
    scenes = []
    for i, span in enumerate(segmented.spans):
        scenes.append(
            Scene(
                scene_id=scene_id(video_id, span.index),
                video_id=video_id,
                video_path=path,
                scene_index=span.index,
                start=span.start,
                end=span.end,
                transcript=texts.transcripts[i],
                caption=texts.captions[i],
                vectors={m: vs[i] for m, vs in vectors.items()},
                keyframes=segmented.keyframes[i] if segmented.keyframes else None,
            )
        )
    return scenes


def encode_video(
    path: Path,
    config: EngineConfig,
    models: ModelSet,
    times: StageTimes | None = None,
    *,
    info: VideoInfo | None = None,
    digest: str | None = None,
) -> tuple[Video, list[Scene]]:
    """Run every stage on one video; returns its records, ready for :meth:`SceneStore.add_video`."""
    times = times if times is not None else StageTimes()
    timed = _timer(times)
    path = Path(path).resolve()
    info = info or timed("probe", probe, path)
    digest = digest or timed("hash", content_hash, path)
    segmented = timed("segment", segment, path, info, config, models)
    words = timed("transcribe", transcribe, path, info, models)
    captions = timed("caption", caption, segmented, models)
    texts = scene_texts(words, segmented.spans, captions)
    vectors = timed("embed_text", embed_texts, texts, models)
    if models.visual is not None:
        vectors["visual"] = [None if k is None else l2_normalize(k.vectors.mean(axis=0)) for k in segmented.keyframes]
    if models.audio is not None:
        vectors["audio"] = timed("embed_audio", embed_audio, path, segmented, models)
    video_id = digest[:16]
    scenes = build_records(video_id, str(path), segmented, texts, vectors)
    video = Video(
        video_id=video_id,
        path=str(path),
        content_hash=digest,
        info=info,
        n_scenes=len(scenes),
        global_vectors={m: global_vector(vs) for m, vs in vectors.items()},
    )
    return video, scenes


def _timer(times: StageTimes) -> Callable:
    def run(stage: str, fn: Callable, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            times.add(stage, time.perf_counter() - t0)
            logger.debug("stage %s took %.3fs", stage, time.perf_counter() - t0)

    return run


__all__ = ["MediaError", "Segmented", "SceneTexts", "StageTimes", "encode_video", "segment", "transcribe"]
