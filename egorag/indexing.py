"""The steps of indexing, as functions over a store and the run's report: which files need
encoding, what a bad file does under the run's policy, and how an encoded video is committed
beside other writers. :meth:`egorag.engine.Engine.index` runs them in order."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from egorag.config import BadMediaPolicy, EngineConfig
from egorag.errors import MediaError
from egorag.reports import IndexReport
from egorag.schema import Video

logger = logging.getLogger("egorag")


def indexed_meanwhile(store, job, report: IndexReport) -> bool:
    """Whether another process indexed ``job``'s content since it was planned (then it is
    counted unchanged, and not encoded twice)."""
    store.refresh()
    if store.get_video(job.digest[:16]) is None:
        return False
    report.unchanged.append(str(job.path))
    return True


def encode_and_write(jobs, config: EngineConfig, models, store, times, report: IndexReport, reindex: bool,
                     policy: BadMediaPolicy, on_video=None, progress: bool = False) -> None:
    """Encode ``jobs`` with loaded ``models``, ``[ingest] workers`` videos side by side
    (:mod:`egorag.ingest.parallel`), and commit each to ``store`` in the order given. A video that
    another writer indexed meanwhile is skipped; ``on_video(done, total, path)`` is called as
    each video is about to start."""
    from tqdm.auto import tqdm

    from egorag.ingest.parallel import Workers
    from egorag.ingest.pipeline import encode_videos

    bar = tqdm(total=len(jobs), desc="indexing", unit="video", disable=not progress)
    started = 0

    def start(job) -> bool:
        nonlocal started
        if on_video is not None:
            on_video(started, len(jobs), str(job.path))
        started += 1
        if not reindex and indexed_meanwhile(store, job, report):
            bar.update()
            return False
        return True

    with Workers(config.ingest.resolved_workers()) as workers, bar:
        def encode(job) -> list:
            return encode_videos([job], config, models, times, workers=workers)

        for job, future in workers.in_order(jobs, encode, start):
            for video, scenes in guarded(future.result, [job], policy, report):
                write(store, video, scenes, report, reindex)
            bar.update()


def plan(files, store, reindex: bool, policy: BadMediaPolicy, report: IndexReport, scenes: Path | None = None) -> list:
    """Probe and hash each file; keep those that need encoding (new, changed or forced). With
    ``scenes`` (a scene list, or a folder of them: :mod:`egorag.ingest.scene_lists`), each
    video's listed scenes are read and checked against it here, before any model loads."""
    from egorag.ingest.decode import check_name, content_hash, probe
    from egorag.ingest.pipeline import VideoJob

    if store is not None:
        store.refresh()  # another process may have indexed some of them meanwhile
    jobs = []
    for f in files:
        try:
            check_name(f)
            if not f.exists():  # named as given: a link's missing target would hide which file it was
                raise MediaError(str(f), "no such file (a link to a missing file)" if f.is_symlink() else "no such file")
            path = f.resolve()
            mtime_ns = os.stat(path).st_mtime_ns
            info = probe(path)
            digest = content_hash(path)
        except MediaError as exc:
            refuse(exc, policy, report)
            continue
        existing = store.get_video(digest[:16]) if store is not None else None
        if existing is not None and not reindex:
            if existing.path != str(path):
                logger.info("%s: same content as indexed %s; skipped", path, existing.path)
            report.unchanged.append(str(path))
            continue
        jobs.append(VideoJob(path, info, digest, mtime_ns, _given_scenes(path, info, scenes)))
    return jobs


def _given_scenes(video: Path, info, scenes: Path | None) -> tuple[tuple[float, float], ...] | None:
    from egorag.ingest.scene_lists import check_scene_list, list_for, read_scene_list

    if scenes is None:
        return None
    found = list_for(video, scenes)
    if found is None:
        return None
    return tuple(check_scene_list(found, read_scene_list(found), info.duration))


def guarded(encode, jobs, policy: BadMediaPolicy, report: IndexReport) -> list:
    """``encode()``'s records; a bad file is refused under ``policy``, and with ``"skip"`` the
    rest of a batch is encoded again without it."""
    try:
        return encode()
    except MediaError as exc:
        for job in jobs:  # a file that changed under the decoder reads as damaged: say why
            if str(job.path) == exc.path:
                try:
                    job.check_unchanged()
                except MediaError as changed:
                    exc = changed
        if len(jobs) > 1 and policy == "skip":  # a batch: retry without the bad file
            good = [j for j in jobs if str(j.path) != exc.path]
            refuse(exc, policy, report)
            jobs[:] = good
            return guarded(encode, jobs, policy, report)
        refuse(exc, policy, report)
        return []


def refuse(exc: MediaError, policy: BadMediaPolicy, report: IndexReport) -> None:
    if policy == "error":
        done = len(report.indexed) + len(report.replaced)
        if done:  # say what this run already committed: it stays indexed
            raise MediaError(exc.path, f"{exc.reason} (the {done} video(s) indexed before it are kept; "
                             "--skip-bad indexes the rest past bad files)") from exc
        raise exc
    logger.info("skipped %s", exc)  # listed in the report (the CLI prints it)
    report.failed.append((exc.path, exc.reason))


def write(store, video: Video, scenes, report: IndexReport, reindex: bool) -> None:
    """Commit one encoded video, under the store's write lock: what it replaces is decided
    on the latest version, so another writer's work is neither duplicated nor lost."""
    with store.writing():
        existing = store.get_video(video.video_id)
        if existing is not None and not reindex:  # another process indexed it while this one encoded
            logger.info("%s: indexed meanwhile by another process; kept theirs", video.path)
            report.unchanged.append(video.path)
            return
        previous = store.video_by_path(video.path)
        if existing is not None:
            store.delete_video(existing.video_id)
        store.add_video(video, scenes)
        if previous is not None and previous.video_id != video.video_id:
            store.delete_video(previous.video_id)
    (report.replaced if (existing or previous) else report.indexed).append(video.path)
    report.scenes += len(scenes)
    report.video_seconds += video.info.duration
