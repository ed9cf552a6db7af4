"""Indexing on a Ray cluster (``egorag index --ray``, extra ``[ray]``): the single-process stages
of :mod:`egorag.ingest.pipeline` as a Ray Data plan, committed to one Lance store by the driver.

    video jobs (probed and hashed by the driver, unchanged files skipped)
      -> decode pass: shot detection, thumbnails, keyframes and screen text   (frames)
      -> speech recognition                                                    (asr)
      -> captions, when a captioner is configured                              (caption)
      -> scene texts, text and audio embeddings, records; each video's scene
         rows written by its worker as Lance fragments                         (embed)
      -> the driver commits the fragments of up to ``commit_every`` videos in
         one append, then their video rows (a video is visible only complete)

Each stage that holds a model is a pool of actors (one model load per actor; ``num_gpus=1``
when the cluster has GPUs); the decode pass runs as plain tasks when no frame model is on.
Ray restarts an actor that dies and retries its video; what the driver committed stays, and a
rerun skips finished videos by content hash. Bad media follows ``on_bad_media``.
"""

from __future__ import annotations

import functools
import json
import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from egorag.config import BadMediaPolicy, EngineConfig
from egorag.errors import IndexMismatchError, MediaError, MissingExtraError
from egorag.ingest.pipeline import VideoJob
from egorag.models import ModelSet
from egorag.models import fingerprints as fingerprints_of
from egorag.reports import IndexReport
from egorag.schema import EncoderFingerprint, scene_schema

logger = logging.getLogger("egorag")

#: components -> loaded models; must pickle (Ray sends it to the workers)
Loader = Callable[[tuple[str, ...]], ModelSet]

FRAME_MODELS = ("visual", "ocr")  # consume frames during the decode pass
EMBED_MODELS = ("text", "audio", "audio_events")
COMMIT_EVERY = 16  # videos per commit


@dataclass(frozen=True)
class RayOptions:
    """How to index on Ray: the cluster's ``address`` (None: the one this process joined, or a
    new local one), at most ``workers`` actors per stage (default: the cluster's CPUs), videos
    per commit, and how workers load models (default: from the engine's config)."""

    address: str | None = None
    workers: int | None = None
    commit_every: int = COMMIT_EVERY
    loader: Loader | None = None


def default_loader(config: EngineConfig) -> Loader:
    """Each actor is one worker: its recogniser gets one replica, not one per core."""
    from egorag.config import IngestConfig
    from egorag.models import load_models

    return functools.partial(load_models, replace(config, ingest=IngestConfig(workers=1)))


def _load_fingerprints(loader: Loader, captioned: bool) -> dict[str, EncoderFingerprint]:
    """The fingerprints a new store gets: the encoders loaded once, on a worker."""
    fingerprints = fingerprints_of(loader(FRAME_MODELS + EMBED_MODELS).encoders())
    if captioned and "text" in fingerprints:
        fingerprints["caption"] = replace(fingerprints["text"], modality="caption")
    return fingerprints


class _Stage(ABC):
    """An actor's models, loaded once; rows that already failed pass through untouched."""

    components: tuple[str, ...] = ()

    def __init__(self, config: EngineConfig, loader: Loader, options: dict[str, Any]):
        self.config, self.options = config, options
        self.models = loader(self.components) if self.components else ModelSet()

    def __call__(self, row: dict) -> dict:
        if row.get("error"):
            return row
        try:
            self.run(row)
        except MediaError as exc:
            row["error"] = exc.reason
        return row

    @abstractmethod
    def run(self, row: dict) -> None:
        """This stage's work on one video's row (adds its output to the row)."""


class Frames(_Stage):
    components = FRAME_MODELS

    def run(self, row: dict) -> None:
        from egorag.ingest.pipeline import segment

        job: VideoJob = row["job"]
        row["segmented"] = segment(job.path, job.info, self.config, self.models, caption_frames=self.options["captioned"],
                                   given=job.scenes)


def _decode(row: dict, config: EngineConfig, options: dict[str, Any]) -> dict:
    return Frames(config, lambda components: ModelSet(), options)(row)


class Transcribe(_Stage):
    components = ("asr", "diarize")

    def run(self, row: dict) -> None:
        from egorag.ingest.pipeline import diarize, transcribe

        job: VideoJob = row["job"]
        row["words"] = transcribe(job.path, job.info, self.models, self.config.asr.window_s)
        row["turns"] = diarize(job.path, job.info, self.models) if self.models.diarizer is not None else None


class Caption(_Stage):
    components = ("caption",)

    def run(self, row: dict) -> None:
        from egorag.ingest.pipeline import caption

        row["captions"] = caption(row["segmented"], self.models)


class Embed(_Stage):
    """Scene texts, their embeddings and the audio's, the records, and the video's scene rows
    written as Lance fragments into the store's scenes table (committed by the driver)."""

    components = EMBED_MODELS

    def __init__(self, config: EngineConfig, loader: Loader, options: dict[str, Any]):
        super().__init__(config, loader, options)
        wanted = {m: fp for m, fp in options["fingerprints"].items() if m != "visual"}
        mine = fingerprints_of(self.models.encoders())
        if options["captioned"] and "text" in mine:  # captions are embedded by the text encoder
            mine["caption"] = replace(mine["text"], modality="caption")
        if mine != wanted:
            raise IndexMismatchError(f"{options['db']}: this store's encoders {sorted(wanted)} differ from a worker's "
                                     f"{sorted(mine)}; use the same models, or index into a new --db")

    def run(self, row: dict) -> None:
        from lance_ray.fragment import write_fragment

        from egorag.ingest.pipeline import (
            embed_texts,
            finish_video,
            per_scene_audio,
            scene_sounds,
            scene_texts,
        )
        from egorag.schema import rows_to_table

        job: VideoJob = row["job"]
        seg = row["segmented"]
        captions = row.get("captions") or [""] * len(seg.spans)
        turns = row.get("turns")
        texts = scene_texts(row["words"], seg.spans, captions, seg.screen, turns or (), self.config.scenes.words_by)
        vectors = embed_texts(texts, self.models, self.options["captioned"], self.config.text.scene_text)
        if self.models.audio is not None:
            vectors["audio"] = per_scene_audio(job.path, seg, self.models.audio)
        events = per_scene_audio(job.path, seg, self.models.audio_events) if self.models.audio_events is not None else None
        sounds = scene_sounds(seg.spans, events, turns, self.config.diarize.min_speech_s)
        video, scenes = finish_video(job, seg, texts, vectors, sounds)
        schema = scene_schema(self.options["fingerprints"])
        table = rows_to_table([s.to_row() for s in scenes], schema)
        written = write_fragment([table], self.options["scenes_uri"], schema=schema,
                                 data_storage_version=self.options["storage_version"]) if scenes else []
        row.update(video=video, fragments=[json.dumps(f.to_json()) for f, _ in written], segmented=None, words=None, captions=None,
                   turns=None)


def index_on_ray(engine, jobs: Sequence[VideoJob], report: IndexReport, *, reindex: bool, policy: BadMediaPolicy,
                 options: RayOptions) -> None:
    """Encode ``jobs`` on a Ray cluster and commit them to ``engine``'s store, recording what
    happened in ``report``."""
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("ray", "ray") from exc
    from egorag import indexing
    from egorag.models import probe_models
    from index.lance import LanceSceneStore

    config = engine.config
    loader = options.loader or default_loader(config)
    statuses = probe_models(config)
    report.modalities = list(statuses.values())
    captioned = statuses["caption"].enabled if "caption" in statuses else False
    started = not ray.is_initialized()
    if started:
        with warnings.catch_warnings():
            # ray.init starts its processes with fork+exec; lancedb's warning is about forks that go on
            warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
            ray.init(address=options.address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        existing = engine.existing_store()
        fingerprints = dict(existing.fingerprints) if existing is not None else \
            ray.get(ray.remote(_load_fingerprints).remote(loader, captioned))
        store = LanceSceneStore(engine.db, fingerprints)
        store.purge_incomplete()
        frame_models = any(statuses[c].enabled for c in FRAME_MODELS if c in statuses)
        shared = {"captioned": "caption" in fingerprints, "frame_models": frame_models, "visual": "visual" in fingerprints,
                  "fingerprints": fingerprints, "db": engine.db,
                  "scenes_uri": store.scenes_uri, "storage_version": store.storage_version()}
        pending: list[dict] = []
        for row in _plan(ray, config, loader, shared, jobs, options.workers).iter_rows():
            if row.get("error"):
                if policy == "error":  # what is encoded so far is committed before the error is raised
                    _commit(store, pending, report, reindex)
                    pending = []
                indexing.refuse(MediaError(str(row["job"].path), row["error"]), policy, report)
                continue
            pending.append(row)
            if len(pending) >= options.commit_every:
                _commit(store, pending, report, reindex)
                pending = []
        _commit(store, pending, report, reindex)
    finally:
        if started:
            ray.shutdown()


def _plan(ray, config: EngineConfig, loader: Loader, options: dict, jobs: Sequence[VideoJob], workers: int | None):
    """The Ray Data plan: one block per video, a pool of actors per model stage."""
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-run INFO lines are not the user's
    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    pool = ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, workers or cpus))
    # every stage's actors must fit on the cluster at once (a stage waiting for a CPU another
    # stage's idle actor holds would stall the stream): a model stage asks for half a CPU, the
    # models' own threads use what is there
    model_args = {"num_gpus": 1} if gpus else {"num_cpus": 0.5}
    args = {"fn_constructor_args": (config, loader, options)}
    ds = ray.data.from_items([{"job": job, "error": None} for job in jobs], override_num_blocks=max(1, len(jobs)))
    if options["frame_models"]:  # on a GPU only for the visual model (OCR runs on the CPU)
        ds = ds.map(Frames, compute=pool, **args, **(model_args if options["visual"] else {"num_cpus": 0.5}))
    else:  # a decode pass without models: plain CPU tasks
        ds = ds.map(_decode, fn_args=(config, options))
    ds = ds.map(Transcribe, compute=pool, **args, **model_args)
    if options["captioned"]:
        ds = ds.map(Caption, compute=pool, **args, **model_args)
    return ds.map(Embed, compute=pool, **args, **model_args)


def _commit(store, rows: list[dict], report: IndexReport, reindex: bool) -> None:
    """One append of these videos' fragments, then their video rows, under the write lock; a
    video another writer indexed meanwhile is kept theirs (its fragments are left uncommitted)."""
    if not rows:
        return
    fragments, videos, replaced, previous = [], [], [], []
    with store.writing():
        for row in rows:
            video = row["video"]
            existing = store.get_video(video.video_id)
            if existing is not None and not reindex:
                logger.info("%s: indexed meanwhile by another process; kept theirs", video.path)
                report.unchanged.append(video.path)
                continue
            if existing is not None:
                store.delete_video(existing.video_id)  # same content, indexed again: its rows go first
            before = store.video_by_path(video.path)
            if before is not None and before.video_id != video.video_id:
                previous.append(before.video_id)
            (replaced if existing is not None or before is not None else videos).append(video)
            fragments += row["fragments"]
        store.commit_fragments(fragments, videos + replaced)
        for video_id in previous:
            store.delete_video(video_id)
    for video in videos + replaced:
        (report.replaced if video in replaced else report.indexed).append(video.path)
        report.scenes += video.n_scenes
        report.video_seconds += video.info.duration

