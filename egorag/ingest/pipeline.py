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
from typing import Protocol

import numpy as np

from egorag.asr import OVERLAP_S as ASR_OVERLAP_S
from egorag.asr import SAMPLE_RATE, join_windows
from egorag.config import AsrConfig, EngineConfig
from egorag.diarize import Turn, label_words, scene_speakers
from egorag.encoders.base import l2_normalize
from egorag.errors import MediaError
from egorag.ingest.decode import (
    content_hash,
    decode_audio_windows,
    decode_frames,
    probe,
)
from egorag.ingest.parallel import StopWhenCancelled, Workers
from egorag.ingest.scenes import ShotDetector, assign_words, build_scenes, join_words
from egorag.ingest.swap import ModelSwap
from egorag.models import ModelSet, requested
from egorag.schema import (
    Keyframes,
    Moment,
    Scene,
    SceneSpan,
    Video,
    VideoInfo,
    Word,
    scene_id,
)

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
    words: tuple[tuple[Word, ...], ...] = ()  # per scene, its spoken words (with speakers where diarized)

    def screen(self, i: int) -> str:
        return "\n".join(text for _, text in self.screens[i]) if self.screens else ""

    def moments(self, i: int) -> tuple[Moment, ...]:
        """Scene ``i``'s spoken words and screen lines with their times, in time order."""
        spoken = [Moment(w.start, w.text.strip(), w.speaker) for w in self.words[i]] if self.words else []
        shown = [Moment(t, text) for t, text in self.screens[i]] if self.screens else []
        return tuple(sorted(spoken + shown, key=lambda m: m.time))


@dataclass(frozen=True)
class SceneSounds:
    """What a scene's sound says besides its words: audio event tags and who talks."""

    events: tuple[tuple[str, ...], ...] = ()  # per scene (none without an audio tagger)
    speakers: tuple[tuple[str, ...], ...] = ()  # per scene (none without a diarizer)


class SceneAudioModel(Protocol):
    """A model that reads each scene's stretch of the audio track (the CLAP encoder, the audio
    event tagger): :func:`per_scene_audio` decodes the track in windows for it."""

    sample_rate: int

    @property
    def reach_s(self) -> float:
        """The longest stretch of one scene it reads (decoding windows overlap by this)."""
        ...

    def stretch(self, span: SceneSpan) -> tuple[float, float]:
        """The part of a scene it reads."""
        ...

    def encode_scenes(self, audio: np.ndarray, spans: Sequence[SceneSpan]) -> list:
        """One result per scene (None: too little audio), ``audio`` starting at time 0."""
        ...


@dataclass
class StageTimes:
    """Wall seconds per stage, summed over the videos of one run."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        with _TIMES_LOCK:  # stages may run on worker threads
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


def segment(path: Path, info: VideoInfo, config: EngineConfig, models: ModelSet, caption_frames: bool | None = None,
            given: Sequence[tuple[float, float]] | None = None, cancelled: threading.Event | None = None) -> Segmented:
    """One decode pass over the frames: shot detection (unless the scenes are ``given``), a
    thumbnail per scene, and the frames the visual model, OCR and the captioner read
    (``caption_frames``: whether a captioner will run later; by default, whether ``models``
    holds one). It stops with :class:`~egorag.ingest.parallel.Cancelled` once ``cancelled`` is set."""
    from egorag.ingest.frames import SceneThumbnails

    detector = ShotDetector(config.scenes, info.fps, info.width, info.height) if given is None else None
    thumbs = SceneThumbnails(period=min(1.0, config.scenes.min_scene_s))
    consumers: list = [c for c in (detector, thumbs) if c is not None]
    if cancelled is not None:
        consumers.append(StopWhenCancelled(cancelled))
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
    else:  # a shot cut, or a change of the text on screen (a new slide of the same design)
        end = min(decoded, info.duration)
        cuts = sorted(set(detector.cut_times()) | set(reader.text_cuts(end) if reader is not None else ()))
        spans = build_scenes(cuts, end, config.scenes)
    keyframes = sampler.keyframes(spans) if sampler is not None else ()
    frames = collector.frames_for(spans, [k.times if k is not None else None for k in keyframes]) if collector is not None else ()
    screen = reader.lines_for(spans) if reader is not None else ()
    return Segmented(info, tuple(spans), tuple(keyframes), tuple(frames), tuple(screen), tuple(thumbs.for_spans(spans)))


def transcribe(path: Path, info: VideoInfo, models: ModelSet, window_s: float = AsrConfig.window_s,
               workers: Workers | None = None) -> list[Word]:
    """The video's words in absolute time, its audio decoded and transcribed one window at a
    time (the windows overlap by ``ASR_OVERLAP_S`` and are joined at a pause). With ``workers``
    the windows are recognised on its threads, side by side, as they are decoded."""
    if models.transcriber is None or not info.has_audio:
        return []

    def recognise(start: float, audio: np.ndarray) -> tuple[float, list[Word]]:
        words = models.transcriber.transcribe(audio)
        return start, [Word(w.start + start, w.end + start, w.text, w.probability) for w in words]

    audio_windows = decode_audio_windows(path, SAMPLE_RATE, window_s, ASR_OVERLAP_S)
    if workers is None:
        return join_windows([recognise(start, audio) for start, audio in audio_windows], ASR_OVERLAP_S)
    return join_windows(workers.map_windows(recognise, audio_windows), ASR_OVERLAP_S)


def diarize(path: Path, info: VideoInfo, models: ModelSet) -> list[Turn]:
    """The speaker turns of the video's whole track (a diarizer needs all of it to tell the
    same voice apart from others: 230 MB of 16 kHz float32 an hour)."""
    if models.diarizer is None or not info.has_audio:
        return []
    from egorag.ingest.decode import decode_audio

    return models.diarizer.diarize(decode_audio(path, SAMPLE_RATE))


def caption(segmented: Segmented, models: ModelSet) -> list[str]:
    if models.captioner is None:
        return [""] * len(segmented.spans)
    if len(segmented.caption_frames) != len(segmented.spans):  # the decode pass was not told a captioner runs
        raise RuntimeError("the captioner has no frames: segment() must keep caption frames (caption_frames=True)")
    return [models.captioner.caption(frames) for frames in segmented.caption_frames]


def scene_texts(words: Sequence[Word], spans: Sequence[SceneSpan], captions: Sequence[str], screens: Sequence = (),
                turns: Sequence[Turn] = (), words_by: str = "sentence") -> SceneTexts:
    per_scene = assign_words(label_words(words, turns) if turns else words, spans, words_by)
    transcripts = tuple(join_words(ws) for ws in per_scene)
    return SceneTexts(transcripts, tuple(captions), tuple(screens), tuple(tuple(ws) for ws in per_scene))


def text_to_embed(transcript: str, caption: str, screen: str, style: str = "joined") -> str:
    """What a scene's ``text`` vector embeds (``[text] scene_text``): its transcript, caption and
    on-screen text joined by spaces, or each "labelled" as the EgoRAG design has them."""
    screen = screen.replace("\n", " / " if style == "labelled" else " ")
    if style == "joined":
        return " ".join(p for p in (transcript, caption, screen) if p)
    parts = [(label, text.strip()) for label, text in (("Transcript", transcript), ("Visuals", caption), ("On screen", screen))]
    return " ".join(f"{label}: {text}" + ("" if text.endswith((".", "!", "?")) else ".") for label, text in parts if text)


def embed_texts(texts: SceneTexts, models: ModelSet, captioned: bool, style: str = "joined") -> dict[str, list[np.ndarray | None]]:
    """``text`` embeds transcript + caption + on-screen text (:func:`text_to_embed`); ``caption``
    the caption alone. Empty text -> null."""
    out: dict[str, list[np.ndarray | None]] = {}
    if models.text is None:
        return out
    combined = [text_to_embed(t, c, texts.screen(i), style) for i, (t, c) in enumerate(zip(texts.transcripts, texts.captions))]
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


def per_scene_audio(path: Path, segmented: Segmented, model: SceneAudioModel | None, window_s: float = AUDIO_WINDOW_S) -> list:
    """``model``'s result for each scene (a CLAP vector, audio event tags), from the scene's
    stretch, the audio decoded one window at a time (48 kHz float32 is 690 MB an hour).
    Consecutive windows overlap by the model's ``reach_s``, so each scene's stretch lies in the
    window where it starts. None for every scene without a model or audio."""
    spans = segmented.spans
    out: list = [None] * len(spans)
    if model is None or not segmented.info.has_audio or not spans:
        return out
    first = [model.stretch(s)[0] for s in spans]  # where each stretch starts
    order = sorted(range(len(spans)), key=first.__getitem__)
    done = 0  # scenes of ``order`` already done
    last = None

    def encode(start: float, audio: np.ndarray, chosen: list[int]) -> None:
        shifted = [SceneSpan(spans[i].index, spans[i].start - start, spans[i].end - start) for i in chosen]
        for i, result in zip(chosen, model.encode_scenes(audio, shifted)):
            out[i] = result

    for start, audio in decode_audio_windows(path, model.sample_rate, window_s, model.reach_s):
        mine = done
        while mine < len(order) and first[order[mine]] < start + window_s:
            mine += 1
        encode(start, audio, order[done:mine])
        done, last = mine, (start, audio)
    if done < len(order) and last is not None:  # stretches past the last window's own part: in it all the same
        encode(*last, order[done:])
    return out


def scene_sounds(spans: Sequence[SceneSpan], events: Sequence | None, turns: Sequence[Turn] | None, min_speech_s: float) -> SceneSounds:
    """Each scene's audio event tags (``events``: the tagger's result per scene; None without a
    tagger) and speakers (from a diarizer's ``turns``; None without a diarizer)."""
    return SceneSounds(tuple(tags or () for tags in events) if events is not None else (),
                       tuple(scene_speakers(turns, spans, min_speech_s)) if turns is not None else ())


def global_vector(vectors: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """A video's global embedding for one modality: mean of its scenes' vectors, re-normalised."""
    present = [v for v in vectors if v is not None]
    return l2_normalize(np.mean(present, axis=0)) if present else None


def build_records(
    video_id: str, path: str, segmented: Segmented, texts: SceneTexts, vectors: dict[str, list], sounds: SceneSounds = SceneSounds()
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
                audio_events=sounds.events[i] if sounds.events else (),
                speakers=sounds.speakers[i] if sounds.speakers else (),
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
    workers: Workers | None = None,
) -> list[tuple[Video, list[Scene]]]:
    """Run the stages over a batch of videos, stage by stage; returns each video's records, ready
    for :meth:`index.lance.LanceSceneStore.add_video`. With ``swap`` (low-memory mode) each stage's model is loaded
    just before the stage and freed after it, so one heavy model is in memory at a time. With
    ``workers`` speech is recognised on its threads, window by window (:mod:`egorag.ingest.parallel`)."""
    timed = _timer(times if times is not None else StageTimes())

    def words_of(job: VideoJob) -> list[Word]:
        return timed("transcribe", transcribe, job.path, job.info, models, config.asr.window_s, workers)

    if swap is None:  # all models loaded: decode + shot detection overlap speech recognition
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="egorag-asr-feed") as feed:
            asr = [feed.submit(words_of, j) for j in jobs]
            cancelled = workers.cancelled if workers is not None else None
            segmented = [timed("segment", segment, j.path, j.info, config, models, None, j.scenes, cancelled) for j in jobs]
            words = [f.result() for f in asr]
    else:
        # the captioner loads after the decode pass: its frames are kept if one is configured
        captioning = bool(config.caption.captioner) and "caption" in (requested(config) or ("caption",))
        with swap.stage(models, "visual"), swap.stage(models, "ocr"):  # both read the decoded frames
            segmented = [timed("segment", segment, j.path, j.info, config, models, captioning, j.scenes) for j in jobs]
        with swap.stage(models, "asr"):
            words = list(workers.videos.map(words_of, jobs)) if workers is not None else [words_of(j) for j in jobs]
    stage = swap.stage if swap is not None else _keep_loaded
    with stage(models, "diarize"):
        diarized = models.diarizer is not None
        turns = [timed("diarize", diarize, j.path, j.info, models) for j in jobs]
    with stage(models, "caption"):
        captioned = models.captioner is not None
        captions = [timed("caption", caption, seg, models) for seg in segmented]
    texts = [scene_texts(w, seg.spans, c, seg.screen, t, config.scenes.words_by)
             for w, seg, c, t in zip(words, segmented, captions, turns)]
    with stage(models, "text"):
        vectors = [timed("embed_text", embed_texts, t, models, captioned, config.text.scene_text) for t in texts]
    with stage(models, "audio"):
        if models.audio is not None:
            for j, seg, v in zip(jobs, segmented, vectors):
                v["audio"] = timed("embed_audio", per_scene_audio, j.path, seg, models.audio)
    with stage(models, "audio_events"):
        tagged = models.audio_events is not None
        events = [timed("audio_events", per_scene_audio, j.path, seg, models.audio_events) for j, seg in zip(jobs, segmented)]
    sounds = [scene_sounds(seg.spans, e if tagged else None, t if diarized else None, config.diarize.min_speech_s)
              for seg, e, t in zip(segmented, events, turns)]
    return [finish_video(j, seg, t, v, s) for j, seg, t, v, s in zip(jobs, segmented, texts, vectors, sounds)]


def finish_video(job: VideoJob, segmented: Segmented, texts: SceneTexts, vectors: dict[str, list],
                 sounds: SceneSounds = SceneSounds()) -> tuple[Video, list[Scene]]:
    """A video's records from its stages' outputs: the visual vector of each scene (its
    keyframes' mean, or a clip encoder's pooled vector), the scene records, and the video's
    global vectors."""
    job.check_unchanged()
    if segmented.keyframes:
        vectors["visual"] = [None if k is None else k.pooled if k.pooled is not None else l2_normalize(k.vectors.mean(axis=0))
                             for k in segmented.keyframes]
    video_id = job.digest[:16]
    scenes = build_records(video_id, str(job.path), segmented, texts, vectors, sounds)
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


def _timer(times: StageTimes) -> Callable:
    def run(stage: str, fn: Callable, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            times.add(stage, time.perf_counter() - t0)
            logger.debug("stage %s took %.3fs", stage, time.perf_counter() - t0)

    return run


__all__ = ["MediaError", "Segmented", "SceneTexts", "StageTimes", "VideoJob", "encode_video", "encode_videos"]
