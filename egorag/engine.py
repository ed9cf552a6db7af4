"""The library API: ``Engine(db).index(paths)``, ``.search(text, k)``, ``.videos()``, ``.delete()``.
The CLI and the server are thin shells over this class."""

from __future__ import annotations

import logging
import numbers
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from egorag import indexing
from egorag.config import BadMediaPolicy, EngineConfig
from egorag.errors import (
    EgoragError,
    IndexMismatchError,
    ModalityUnavailableError,
    NotFoundError,
    QueryError,
)
from egorag.images import load_image
from egorag.models import fingerprints
from egorag.reports import CheckReport, IndexReport
from egorag.schema import EncoderFingerprint, Video

logger = logging.getLogger("egorag")

DB_ENV = "EGORAG_DB"
DEFAULT_DB = "egorag_db"


class Engine:
    """A video retrieval engine over one store directory.

    ``db`` defaults to ``$EGORAG_DB``, else ``./egorag_db``. Models load lazily: indexing loads
    the document-side models, searching only the query-side ones of the modalities in the store.
    """

    def __init__(self, db: str | Path | None = None, config: EngineConfig | None = None, models=None):
        """``models`` (a :class:`~egorag.models.ModelSet`) shares already-loaded models between
        engines and serves both indexing and querying; by default they load from ``config``."""
        self.db = str(db or os.environ.get(DB_ENV) or DEFAULT_DB)
        self.config = config or EngineConfig()
        self._given_models = models
        self._index_models = models
        self._query_models = models
        self._store = None
        self._retriever = None
        self._snapshots = None

    def sibling(self) -> Engine:
        """Another engine on the same store and config, sharing the models this one was given
        (if any): for work on another thread, as an index job beside a serving engine."""
        return Engine(self.db, self.config, models=self._given_models)

    # -- models and store ---------------------------------------------------------------------

    def index_models(self):
        if self._index_models is None:
            from egorag.models import load_models

            self._index_models = load_models(self.config)
        return self._index_models

    def store(self, create: bool = False):
        """The LanceDB store, the system of record (queries do not read it: see
        :meth:`snapshots`); ``create`` opens it for writing with the index models' fingerprint."""
        from index.lance import LanceSceneStore

        if create:
            wanted = fingerprints(self.index_models().encoders())
            if not isinstance(self._store, LanceSceneStore) or dict(self._store.fingerprints) != wanted:
                self._store = LanceSceneStore(self.db, wanted)
                return self._store
        elif self._store is None:
            self._store = LanceSceneStore(self.db)
            return self._store
        self._store.refresh()  # another process may have written since
        return self._store

    def snapshots(self):
        """The store's search snapshots, followed (:class:`index.snapshot.Snapshots`): what
        queries read, without LanceDB while the newest snapshot describes the store."""
        if self._snapshots is None:
            from index.snapshot import Snapshots

            self._check_store()
            self._snapshots = Snapshots(self.db, self._build_snapshot, self._faiss_options())
        return self._snapshots

    def _faiss_options(self):
        from index.vectors import FaissOptions

        return FaissOptions(kind=self.config.retrieval.faiss_index)

    def _build_snapshot(self, wait: bool = True) -> bool:
        from index.build import build_snapshot

        return build_snapshot(self.store(), self._faiss_options(), wait)

    def _check_store(self) -> None:
        """A directory without both tables is no store: say so before any snapshot is built."""
        from index.files import lance_versions

        if lance_versions(self.db) is None:
            self.store()  # raises StoreNotFoundError with what to do

    # -- indexing -----------------------------------------------------------------------------

    def index(
        self,
        paths: Iterable[str | Path],
        *,
        reindex: bool = False,
        on_bad_media: BadMediaPolicy | None = None,
        progress: bool = False,
        on_video: Callable[[int, int, str], None] | None = None,
        ray: bool | str | Any = None,
        scenes: str | Path | None = None,
    ) -> IndexReport:
        """Index files and folders. Unchanged videos (same content hash) are skipped unless
        ``reindex``; a file whose content changed replaces its old entry. Every file is probed and
        hashed before any model loads, so bad input fails in seconds and a run with nothing to do
        loads nothing. With ``on_bad_media="error"`` the first bad file raises :class:`MediaError`
        (what is indexed stays); with ``"skip"`` it is logged and listed in ``report.failed``.
        With ``config.low_memory`` the videos are encoded stage by stage, one model at a time.
        ``on_video(done, total, path)`` is called as each video to encode starts (``path``) and
        once at the end (``path`` empty). ``ray`` encodes on a Ray cluster (:mod:`egorag.cluster`):
        True for the one this process joined or a new local one, an address, or
        :class:`~egorag.cluster.RayOptions`. ``scenes`` gives the scenes instead of shot detection:
        a scene list for the one video indexed, or a folder of ``<video name>.scenes.json``
        (:mod:`egorag.ingest.scene_lists`); a list that does not fit its video is an error."""
        from egorag.ingest.decode import find_videos
        from egorag.ingest.parallel import Workers
        from egorag.ingest.pipeline import StageTimes, encode_videos
        from egorag.ingest.swap import ModelSwap

        policy = on_bad_media or self.config.on_bad_media
        t0 = time.perf_counter()
        files = find_videos(paths)
        report = IndexReport()
        if not files:  # nothing to load models for (find_videos said why)
            self._finish(report, StageTimes(), t0)
            return report
        times = StageTimes()
        existing = self.existing_store()
        given = None if scenes is None else Path(scenes)
        if given is not None and given.is_file() and len(files) != 1:
            raise EgoragError(f"{given}: one scene list is for one video, but {len(files)} were given; "
                              "use a folder of <video name>.scenes.json for several")
        jobs = indexing.plan(files, existing, reindex, policy, report, given)
        if not jobs:
            if existing is not None and self._index_models is not None:
                self.store(create=True)  # models at hand: a store built by others is refused as ever
            self._finish(report, times, t0)
            return report
        if ray:
            from egorag.cluster import RayOptions, index_on_ray

            options = ray if isinstance(ray, RayOptions) else RayOptions(address=ray if isinstance(ray, str) else None)
            index_on_ray(self, jobs, report, reindex=reindex, policy=policy, options=options)
            from index.lance import LanceSceneStore

            self._store = LanceSceneStore(self.db)  # as the driver committed it: _finish builds the snapshot
        elif self.config.low_memory:
            from egorag.models import ModelSet

            if on_video is not None:
                on_video(0, len(jobs), str(jobs[0].path))
            swap = ModelSwap(self.config)
            with Workers(self.config.ingest.resolved_workers()) as workers:
                results = indexing.guarded(lambda: encode_videos(jobs, self.config, ModelSet(), times, swap, workers),
                                           jobs, policy, report)
            report.modalities = list(swap.status.values())
            if results:
                store = self._open_for_write(fingerprints({m: e for m, e in swap.encoders.items() if e is not None}))
                for job, (video, scenes) in zip(jobs, results):
                    indexing.write(store, video, scenes, report, reindex)
        else:
            t_load = time.perf_counter()
            models = self.index_models()
            for encoder in {id(e): e for e in models.encoders().values()}.values():
                encoder.load_for_documents()  # timed with the loading, not the first video's encoding
            times.add("load_models", time.perf_counter() - t_load)
            report.modalities = list(models.status.values())
            store = self.store(create=True)
            store.purge_incomplete()
            indexing.encode_and_write(jobs, self.config, models, store, times, report, reindex, policy,
                                      on_video, progress)
        if on_video is not None:
            on_video(len(jobs), len(jobs), "")
        self._finish(report, times, t0)
        return report

    def existing_store(self):
        """The store as it is (None when there is none yet: then LanceDB is not even imported)."""
        from index.lance import SCENES

        if not (Path(self.db) / f"{SCENES}.lance").exists():
            return None
        from index.lance import LanceSceneStore, StoreNotFoundError

        try:
            return LanceSceneStore(self.db)
        except StoreNotFoundError:
            return None

    def _open_for_write(self, fingerprints: dict[str, EncoderFingerprint]):
        from index.lance import LanceSceneStore

        self._store = LanceSceneStore(self.db, fingerprints)
        self._store.purge_incomplete()
        return self._store

    def _finish(self, report: IndexReport, times, t0: float) -> None:
        """Publish the search snapshot of what was committed (every write ends here)."""
        if self._store is not None and (report.indexed or report.replaced):
            t_lookup = time.perf_counter()
            self._store.build_indexes()
            times.add("lookup_indexes", time.perf_counter() - t_lookup)
        if self._store is not None:
            t_snapshot = time.perf_counter()
            self._build_snapshot()
            times.add("snapshot", time.perf_counter() - t_snapshot)
        report.stage_seconds = dict(times.seconds)
        report.wall_seconds = time.perf_counter() - t0

    # -- querying -----------------------------------------------------------------------------

    def query_encoders(self) -> dict[str, Any]:
        """Query-side encoders for the store's modalities, checked against its fingerprint."""
        from egorag.models import load_models

        stored = dict(self.snapshots().current().fingerprints)
        if self._query_models is None:
            wanted = []
            if {"text", "caption"} & set(stored):
                wanted.append("text")
            wanted += [m for m in ("visual", "audio") if m in stored]
            self._query_models = load_models(self.config, tuple(wanted))
        qm = self._query_models
        encoders = {m: e for m, e in (("text", qm.text), ("caption", qm.text), ("visual", qm.visual), ("audio", qm.audio)) if e is not None and m in stored}
        mine = fingerprints(encoders)
        for m, fp in mine.items():
            if stored[m] != fp:
                setting = stored[m].setting()
                raise IndexMismatchError(
                    f"{self.db}: modality {m!r} was indexed with {stored[m].checkpoint} "
                    f"({stored[m].dim}d) but the engine is configured with {fp.checkpoint} ({fp.dim}d); search it "
                    f"with the model that built it{f' ({setting})' if setting else ''}, or index its videos again "
                    f"into a new --db"
                )
        for m in set(stored) - set(encoders):
            logger.warning("modality %r is in the store but its query encoder is unavailable here", m)
        return encoders

    def retriever(self):
        if self._retriever is None:
            from retrieval.hierarchical import HierarchicalRetriever

            self._retriever = HierarchicalRetriever(self.snapshots().current, self.query_encoders(), self.config.retrieval)
        return self._retriever

    def search(self, text: str | None = None, *, image: Any = None, k: int = 10, where=None):
        """Ranked time-stamped hits for a text and/or image query (a PIL image or a path)."""
        from egorag.hits import SearchResult
        from retrieval.hierarchical import Query

        _check_k(k)
        self._check_videos(where)
        if image is not None:
            self.check_image_queries()  # before an image file is decoded
        if isinstance(image, (str, Path)):
            image = load_image(image)
        query = Query(text=text, image=image)  # a blank query raises QueryError
        retriever = self.retriever()
        hits = retriever.search(query, k=k, where=where)
        return SearchResult(query=text or "<image>", hits=hits)

    def similar(self, scene_id: str, *, k: int = 10, where=None):
        """"More like this": the scenes nearest to an indexed scene in every modality it has
        (its own vectors as the query; any visual model, the Qwen2-VL tower included)."""
        from egorag.hits import SearchResult

        _check_k(k)
        self._check_videos(where)
        return SearchResult(query=f"like {scene_id}", hits=self.retriever().similar(scene_id, k=k, where=where))

    def _check_videos(self, where) -> None:
        """A filter naming a video id that is not indexed is a :class:`QueryError` listing
        close matches (ids that start alike or are spelled alike, videos of that file name),
        not an empty result that looks like "nothing matched"."""
        import difflib

        wanted = getattr(where, "video_ids", ())
        if not wanted:
            return
        videos = self.videos()
        ids = {v.video_id for v in videos}
        for ref in wanted:
            if ref in ids:
                continue
            close = [i for i in sorted(ids) if i.startswith(ref)] + difflib.get_close_matches(ref, sorted(ids), n=3)
            close += [v.video_id for v in videos if Path(v.path).name == ref or v.path == ref]
            hint = f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else f" (the store holds {len(ids)} video(s))"
            raise QueryError(f"no indexed video has the id {ref!r}{hint}")

    def check_image_queries(self) -> None:
        """Raise :class:`ModalityUnavailableError`, saying why, unless this store and machine
        answer image queries (the visual modality is in the store and its encoder loads)."""
        if "visual" not in self.retriever().encoders:
            raise ModalityUnavailableError(self._no_image_queries())

    def _no_image_queries(self) -> str:
        if "visual" not in self.snapshots().current().fingerprints:
            return (f"{self.db}: image queries need the visual modality (CLIP), and this store was indexed without it; "
                    "re-index with CLIP weights available (see `egorag status`)")
        status = self._query_models.status.get("visual") if self._query_models is not None else None
        why = status.detail if status is not None else "no visual query encoder"
        return f"image queries need the visual modality's encoder, which cannot load here: {why}"

    def search_many(self, texts: Sequence[str], *, k: int = 10, where=None) -> list:
        """:meth:`search` for several text queries: the same hits, in less time per query (the
        text encoder and the fused sketch's scan run once for all of them)."""
        from egorag.hits import SearchResult
        from retrieval.hierarchical import Query

        _check_k(k)
        self._check_videos(where)
        results = self.retriever().search_many([Query(text=t) for t in texts], k=k, where=where)
        return [SearchResult(query=t, hits=hits) for t, hits in zip(texts, results)]

    def ask(self, question: str, *, use_llm: bool = True, where=None, chat=None, k: int | None = None):
        """Retrieve ``k`` scenes of evidence (default: the ``[answer]`` config's) for ``question``
        and answer it with the configured LLM (``chat`` overrides it); with ``use_llm=False``, or
        no LLM configured, the answer holds the prompt and evidence only."""
        from retrieval.answer import answer, create_chat_model

        cfg = self.config.answer
        hits = self.search(question, k=k or cfg.k, where=where).hits
        if use_llm and chat is None:
            chat = create_chat_model(cfg)
        return answer(question, hits, chat if use_llm else None, cfg)

    def evaluate(self, queries_path: str | Path, ablation: bool = False, k: int = 10) -> dict:
        """Temporal hit@1/5/10 and MRR for a JSONL query set; with ``ablation``, also each
        modality alone, fusion without the video prior, and RRF."""
        from retrieval.evaluate import ablation_configs, evaluate, load_queries
        from retrieval.hierarchical import HierarchicalRetriever, Query

        queries = load_queries(queries_path)
        base = self.retriever()
        if not ablation:
            return {"default": evaluate(lambda texts: base.search_many([Query(text=t) for t in texts], k), queries)}
        sources = [m for m in self.snapshots().current().modalities if m in base.encoders] + ["bm25"]
        results = {}
        for name, cfg in ablation_configs(self.config.retrieval, sources).items():
            retriever = HierarchicalRetriever(base.backend, base.encoders, cfg)
            results[name] = evaluate(lambda texts, r=retriever: r.search_many([Query(text=t) for t in texts], k), queries)
        return results

    def classify_images(self, paths: Sequence[str | Path], labels: Sequence[str], *, names: Sequence[str] | None = None):
        """Zero-shot classify image files (paths, or open binary files with ``names``) with the
        visual model (required: an error if absent)."""
        from egorag.classify import classify

        images = [load_image(p) for p in paths]  # a bad file fails before any model loads
        encoder = self._visual_encoder()
        return classify(list(names) if names is not None else [str(p) for p in paths], encoder.encode_images(images), encoder, labels)

    def classify_scenes(self, labels: Sequence[str], where=None):
        """Zero-shot classify indexed scenes by their keyframes' mean visual vector."""
        from egorag.classify import classify

        encoder = self._visual_encoder()
        ids, vectors = self.store().scene_vectors("visual", where)
        return classify(ids, vectors, encoder, labels)

    def _visual_encoder(self):
        from egorag.models import load_models

        if self._query_models is None or self._query_models.visual is None:
            models = load_models(self.config, ("visual",))
            if models.visual is None:
                raise ModalityUnavailableError(f"the visual modality is needed but off: {models.status['visual'].detail}")
            if self._query_models is None:
                self._query_models = models
            else:
                self._query_models.visual = models.visual
        encoder = self._query_models.visual
        if not encoder.text_queries:
            raise ModalityUnavailableError(f"zero-shot classification reads labels as text, and the visual model "
                                           f"{encoder.checkpoint} has no text tower; use [visual] model = \"ViT-B-32\" (open_clip) or \"xclip\"")
        return encoder

    # -- catalogue ----------------------------------------------------------------------------

    def videos(self) -> list[Video]:
        """The indexed videos by path (metadata only): the videos table as the newest search
        snapshot holds it when that snapshot describes the store's current version (only its
        ``videos.arrow`` is read: no LanceDB import), else from the snapshot built now."""
        from index.snapshot import read_videos

        self._check_store()
        videos = read_videos(self.db)
        if videos is None:
            videos = self.snapshots().current(max_age=0).video_table()
        return sorted(videos, key=lambda v: v.path)

    def video(self, video_id: str) -> Video:
        """One indexed video by id; :class:`EgoragError` naming close ids if there is none."""
        for video in self.videos():
            if video.video_id == video_id:
                return video
        raise NotFoundError(f"{video_id}: no such video in {self.db} (see `egorag videos`)")

    def scene(self, scene_id: str):
        """One scene's record (texts, times, moments; no vectors) by id."""
        found = self.store().get_scenes([scene_id])
        if not found:
            raise NotFoundError(f"{scene_id}: no such scene in {self.db} (scene ids are <video id>:<index>, as hits give them)")
        return found[0]

    def thumbnail(self, scene_id: str) -> bytes:
        """The scene's JPEG thumbnail, made at index time."""
        jpeg = self.store().thumbnail(scene_id)
        if jpeg is None:
            self.scene(scene_id)  # no such scene: says so
            raise EgoragError(f"{scene_id}: this scene has no thumbnail (indexed by an egorag without them; `egorag index --reindex` adds them)")
        return jpeg

    def delete(self, refs: Sequence[str] | str) -> list[Video]:
        """Delete videos by id or path; raises :class:`EgoragError` for one that is not indexed."""
        from index.lance import LanceSceneStore

        store = self._store = LanceSceneStore(self.db)
        refs = [refs] if isinstance(refs, str) else list(refs)
        found = []
        with store.writing():
            for ref in refs:
                video = store.get_video(ref) or store.video_by_path(str(Path(ref).resolve()))
                if video is None:
                    raise NotFoundError(f"{ref}: no such video in {self.db} (see `egorag videos`)")
                found.append(video)
            for video in found:
                store.delete_video(video.video_id)
            self._build_snapshot()  # under the same lock: no reader sees the deletion unpublished for long
        return found

    def check(self) -> CheckReport:
        """Verify the store: read every row of its tables (LanceDB), check each video's scene
        rows, and re-hash every file of the newest search snapshot against its manifest. A
        damaged snapshot is rebuilt from the store; damage to the tables is reported with what
        to do."""
        from index import files
        from index.lance import LanceSceneStore

        report = CheckReport()
        store = self._store = LanceSceneStore(self.db)
        report.videos, report.scenes, damage = store.verify()
        if damage:
            report.problems += [f"{d}; restore {self.db} from a backup, or index the videos again into a new --db" for d in damage]
            return report
        with files.store_lock(self.db):
            newest = files.newest(self.db)
            manifest = files.read_manifest(newest[1]) if newest else None
            if newest is not None:
                report.search_files = len(manifest["files"]) if manifest else 0
                problem = "its manifest is missing or unreadable" if manifest is None else files.check_manifest(newest[1], manifest, full=True)
                if problem is not None:
                    report.repaired.append(f"{problem}: search snapshot rebuilt from the store")
                    (newest[1] / files.MANIFEST).unlink(missing_ok=True)  # never built on or read again
            self._build_snapshot()
        return report


def _check_k(k: int) -> None:
    """A blank query is refused by :class:`~retrieval.hierarchical.Query` itself; this is ``k``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise QueryError(f"k must be a whole number of at least 1, got {k!r}")
