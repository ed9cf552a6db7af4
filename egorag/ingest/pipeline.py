"""Ingest stages as plain functions over typed records, and the loop that runs them per video.

probe -> segment (one decode pass: shot detection + frame sampling) -> transcribe -> caption ->
embed -> store. Each stage takes and returns dataclasses, so the stages can later run in parallel
or on other machines without change.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from egorag.asr import OVERLAP_S as ASR_OVERLAP_S
from egorag.asr import SAMPLE_RATE, join_windows
from egorag.config import AsrConfig, EngineConfig
from egorag.encoders.base import l2_normalize
from egorag.errors import MediaError
from egorag.ingest.decode import (
    content_hash,
    decode_audio_windows,
    decode_frames,
    probe,
)
from egorag.ingest.scenes import ShotDetector, assign_words, build_scenes, join_words
from egorag.models import ModelSet, requested
from egorag.schema import Keyframes, Scene, SceneSpan, Video, VideoInfo, Word, scene_id

logger = logging.getLogger("egorag")
_TIMES_LOCK = threading.Lock()
AUDIO_WINDOW_S = 300.0  # audio for the audio encoder is decoded this many seconds at a time


@dataclass(frozen=True)
class Segmented:
    """Output of the decode pass: scene spans and, when the visual modality runs, keyframes."""

    info: VideoInfo
    spans: tuple[SceneSpan, ...]
    keyframes: tuple[Keyframes | None, ...] = ()
    caption_frames: tuple[list, ...] = ()  # per scene, PIL frames for the captioner
    screen: tuple[tuple[tuple[float, str], ...], ...] = ()  # per scene, the screen lines read and when (none without OCR)
    thumbnails: tuple[bytes | None, ...] = ()  # per scene, a small JPEG of its middle


@dataclass(frozen=True)
class SceneTexts:
    transcripts: tuple[str, ...]
    captions: tuple[str, ...]
    screens: tuple[tuple[tuple[float, str], ...], ...] = ()  # per scene, its screen lines and when (none without OCR)
    words: tuple[tuple[Word, ...], ...] = ()  # per scene, its spoken words

    def screen(self, i: int) -> str:
        return "\n".join(text for _, text in self.screens[i]) if self.screens else ""

    def moments(self, i: int) -> tuple[tuple[float, str], ...]:
        """Scene ``i``'s spoken words and screen lines with their times, in time order."""
        spoken = [(w.start, w.text.strip()) for w in self.words[i]] if self.words else []
        shown = list(self.screens[i]) if self.screens else []
        return tuple(sorted(spoken + shown, key=lambda m: m[0]))


@dataclass
class StageTimes:
    """Wall seconds per stage, summed over the videos of one run."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        with _TIMES_LOCK:  # stages may run on worker threads
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


def segment(path: Path, info: VideoInfo, config: EngineConfig, models: ModelSet, caption_frames: bool | None = None,
            given: Sequence[tuple[float, float]] | None = None) -> Segmented:
    """One decode pass over the frames: shot detection (unless the scenes are ``given``), a
    thumbnail per scene, and the frames the visual model, OCR and the captioner read
    (``caption_frames``: whether a captioner will run later; by default, whether ``models``
    holds one)."""
    from egorag.ingest.frames import SceneThumbnails

    detector = ShotDetector(config.scenes, info.fps, info.width, info.height) if given is None else None
    thumbs = SceneThumbnails(period=min(1.0, config.scenes.min_scene_s))
    consumers: list = [c for c in (detector, thumbs) if c is not None]
    sampler = None
    if models.visual is not None:
        from egorag.ingest.frames import FrameSampler

        sampler = FrameSampler(models.visual, config.visual, config.scenes.min_scene_s)
        consumers.append(sampler)
    reader = None
    if models.ocr is not None:
        from egorag.ocr import ScreenFrames

        reader = ScreenFrames(models.ocr, config.ocr)
        consumers.append(reader)
    collector = None
    if caption_frames or (caption_frames is None and models.captioner is not None):
        from egorag.ingest.frames import CaptionFrames

        collector = CaptionFrames(period=min(1.0, config.scenes.min_scene_s), per_scene=config.caption.frames)
        consumers.append(collector)
    decoded = decode_frames(path, info, consumers)
    if given is not None:
        spans = [SceneSpan(i, start, end) for i, (start, end) in enumerate(given)]
    else:
        spans = build_scenes(detector.cut_times(), min(decoded, info.duration), config.scenes)
    keyframes = sampler.keyframes(spans) if sampler is not None else ()
    frames = collector.frames_for(spans, [k.times if k is not None else None for k in keyframes]) if collector is not None else ()
    screen = reader.lines_for(spans) if reader is not None else ()
    return Segmented(info, tuple(spans), tuple(keyframes), tuple(frames), tuple(screen), tuple(thumbs.for_spans(spans)))


def transcribe(path: Path, info: VideoInfo, models: ModelSet, window_s: float = AsrConfig.window_s) -> list[Word]:
    """The video's words in absolute time, its audio decoded and transcribed one window at a
    time (the windows overlap by ``ASR_OVERLAP_S`` and are joined at a pause)."""
    if models.transcriber is None or not info.has_audio:
        return []
    windows = []
    for start, audio in decode_audio_windows(path, SAMPLE_RATE, window_s, ASR_OVERLAP_S):
        words = models.transcriber.transcribe(audio)
        windows.append((start, [Word(w.start + start, w.end + start, w.text, w.probability) for w in words]))
    return join_windows(windows, ASR_OVERLAP_S)


def caption(segmented: Segmented, models: ModelSet) -> list[str]:
    if models.captioner is None:
        return [""] * len(segmented.spans)
    if len(segmented.caption_frames) != len(segmented.spans):  # the decode pass was not told a captioner runs
        raise RuntimeError("the captioner has no frames: segment() must keep caption frames (caption_frames=True)")
    return [models.captioner.caption(frames) for frames in segmented.caption_frames]


def scene_texts(words: Sequence[Word], spans: Sequence[SceneSpan], captions: Sequence[str], screens: Sequence = ()) -> SceneTexts:
    per_scene = assign_words(words, spans)
    transcripts = tuple(join_words(ws) for ws in per_scene)
    return SceneTexts(transcripts, tuple(captions), tuple(screens), tuple(tuple(ws) for ws in per_scene))


def embed_texts(texts: SceneTexts, models: ModelSet, captioned: bool) -> dict[str, list[np.ndarray | None]]:
    """``text`` embeds transcript + caption + on-screen text; ``caption`` the caption alone.
    Empty text -> null."""
    out: dict[str, list[np.ndarray | None]] = {}
    if models.text is None:
        return out
    combined = [" ".join(p for p in (t, c, texts.screen(i).replace("\n", " ")) if p)
                for i, (t, c) in enumerate(zip(texts.transcripts, texts.captions))]
    out["text"] = _embed_nonempty(models.text, combined)
    if captioned:
        out["caption"] = _embed_nonempty(models.text, list(texts.captions))
    return out


def _embed_nonempty(encoder, texts: list[str]) -> list[np.ndarray | None]:
    keep = [i for i, t in enumerate(texts) if t.strip()]
    vectors = encoder.encode_documents([texts[i] for i in keep]) if keep else None
    out: list[np.ndarray | None] = [None] * len(texts)
    for row, i in enumerate(keep):
        out[i] = vectors[row]
    return out


def embed_audio(path: Path, segmented: Segmented, models: ModelSet, window_s: float = AUDIO_WINDOW_S) -> list[np.ndarray | None]:
    """One audio vector per scene, from its stretch (at most ``max_seconds`` around its centre:
    the encoder's ``stretch``), the audio decoded one window at a time (48 kHz float32 is 690 MB
    an hour). Consecutive windows overlap by ``max_seconds``, so each scene's stretch lies in the
    window where it starts."""
    spans = segmented.spans
    out: list[np.ndarray | None] = [None] * len(spans)
    if models.audio is None or not segmented.info.has_audio or not spans:
        return out
    encoder = models.audio
    first = [encoder.stretch(s)[0] for s in spans]  # where each stretch starts
    order = sorted(range(len(spans)), key=first.__getitem__)
    done = 0  # scenes of ``order`` already encoded
    last = None

    def encode(start: float, audio: np.ndarray, chosen: list[int]) -> None:
        shifted = [SceneSpan(spans[i].index, spans[i].start - start, spans[i].end - start) for i in chosen]
        for i, vector in zip(chosen, encoder.encode_scenes(audio, shifted)):
            out[i] = vector

    for start, audio in decode_audio_windows(path, encoder.sample_rate, window_s, encoder.config.max_seconds):
        mine = done
        while mine < len(order) and first[order[mine]] < start + window_s:
            mine += 1
        encode(start, audio, order[done:mine])
        done, last = mine, (start, audio)
    if done < len(order) and last is not None:  # stretches past the last window's own part: in it all the same
        encode(*last, order[done:])
    return out


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
                screen_text=texts.screen(i),
                moments=texts.moments(i),
                vectors={m: vs[i] for m, vs in vectors.items()},
                keyframes=segmented.keyframes[i] if segmented.keyframes else None,
                thumbnail=segmented.thumbnails[i] if segmented.thumbnails else None,
            )
        )
    return scenes


@dataclass(frozen=True)
class VideoJob:
    """A video accepted for encoding: probed and hashed."""

    path: Path
    info: VideoInfo
    digest: str
    mtime_ns: int | None = None  # when it was probed; None: not checked for changes
    scenes: tuple[tuple[float, float], ...] | None = None  # given (start, end) of each scene; None: shot detection

    def check_unchanged(self) -> None:
        """Raise :class:`MediaError` if the file changed since it was probed and hashed (a
        download or copy still being written): its records would not match its content."""
        if self.mtime_ns is None:
            return
        try:
            st = os.stat(self.path)
        except OSError:
            raise MediaError(str(self.path), "disappeared while it was being indexed") from None
        if st.st_size != self.info.size_bytes or st.st_mtime_ns != self.mtime_ns:
            raise MediaError(str(self.path), "changed while it was being indexed (still being written or copied?); "
                             "index it again once it is complete")


def encode_videos(
    jobs: Sequence[VideoJob],
    config: EngineConfig,
    models: ModelSet,
    times: StageTimes | None = None,
    swap: ModelSwap | None = None,
) -> list[tuple[Video, list[Scene]]]:
    """Run the stages over a batch of videos, stage by stage; returns each video's records, ready
    for :meth:`index.lance.LanceSceneStore.add_video`. With ``swap`` (low-memory mode) each stage's model is loaded
    just before the stage and freed after it, so one heavy model is in memory at a time."""
    timed = _timer(times if times is not None else StageTimes())
    if swap is None:  # all models loaded: decode + shot detection overlap speech recognition
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="egorag-asr") as pool:
            asr = [pool.submit(timed, "transcribe", transcribe, j.path, j.info, models, config.asr.window_s) for j in jobs]
            segmented = [timed("segment", segment, j.path, j.info, config, models, None, j.scenes) for j in jobs]
            words = [f.result() for f in asr]
    else:
        # the captioner loads after the decode pass: its frames are kept if one is configured
        captioning = bool(config.caption.captioner) and "caption" in (requested(config) or ("caption",))
        with swap.stage(models, "visual"), swap.stage(models, "ocr"):  # both read the decoded frames
            segmented = [timed("segment", segment, j.path, j.info, config, models, captioning, j.scenes) for j in jobs]
        with swap.stage(models, "asr"):
            words = [timed("transcribe", transcribe, j.path, j.info, models, config.asr.window_s) for j in jobs]
    stage = swap.stage if swap is not None else _keep_loaded
    with stage(models, "caption"):
        captioned = models.captioner is not None
        captions = [timed("caption", caption, seg, models) for seg in segmented]
    texts = [scene_texts(w, seg.spans, c, seg.screen) for w, seg, c in zip(words, segmented, captions)]
    with stage(models, "text"):
        vectors = [timed("embed_text", embed_texts, t, models, captioned) for t in texts]
    with stage(models, "audio"):
        if models.audio is not None:
            for j, seg, v in zip(jobs, segmented, vectors):
                v["audio"] = timed("embed_audio", embed_audio, j.path, seg, models)
    return [finish_video(j, seg, t, v) for j, seg, t, v in zip(jobs, segmented, texts, vectors)]


def finish_video(job: VideoJob, segmented: Segmented, texts: SceneTexts, vectors: dict[str, list]) -> tuple[Video, list[Scene]]:
    """A video's records from its stages' outputs: the visual vector of each scene (its
    keyframes' mean, or a clip encoder's pooled vector), the scene records, and the video's
    global vectors."""
    job.check_unchanged()
    if segmented.keyframes:
        vectors["visual"] = [None if k is None else k.pooled if k.pooled is not None else l2_normalize(k.vectors.mean(axis=0))
                             for k in segmented.keyframes]
    video_id = job.digest[:16]
    scenes = build_records(video_id, str(job.path), segmented, texts, vectors)
    global_vectors = {m: global_vector(vs) for m, vs in vectors.items()}
    return Video(video_id, str(job.path), job.digest, job.info, len(scenes), global_vectors), scenes


def encode_video(path: Path, config: EngineConfig, models: ModelSet, times: StageTimes | None = None) -> tuple[Video, list[Scene]]:
    """Probe, hash and encode one video with already-loaded models."""
    path = Path(path).resolve()
    [result] = encode_videos([VideoJob(path, probe(path), content_hash(path))], config, models, times)
    return result


@contextmanager
def _keep_loaded(models: ModelSet, component: str) -> Iterator[None]:
    yield


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
            _free_memory()


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


def _timer(times: StageTimes) -> Callable:
    def run(stage: str, fn: Callable, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            times.add(stage, time.perf_counter() - t0)
            logger.debug("stage %s took %.3fs", stage, time.perf_counter() - t0)

    return run


__all__ = ["MediaError", "ModelSwap", "Segmented", "SceneTexts", "StageTimes", "VideoJob", "encode_video", "encode_videos"]
