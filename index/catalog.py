"""What a snapshot knows of the scenes and the videos, besides their vectors and texts.

:class:`SceneCatalog`: row-addressed scene metadata. A scene's row number is its FAISS label in
every column, so search results, filters and metadata lookups stay in numpy/Arrow, with no
per-query dictionaries. Scenes of a video are stored contiguously in scene order; each row also
says where its keyframe vectors start in the snapshot's ``keyframes.f32`` and how many it has.

The video level: the videos table as of the snapshot (``videos.arrow``: what ``egorag videos``
lists, and each video's global vectors) and what is derived from it once per snapshot
(:func:`derive_video_level`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from egorag.filters import SceneFilter, glob_to_like
from egorag.schema import LABELS_TYPE, EncoderFingerprint, vector_column
from index.files import atomic_path

META_KEY = b"egorag.catalog"
SCALARS = ("scene_id", "video_id", "video_path", "scene_index", "start", "end", "audio_events", "speakers")


@dataclass(frozen=True)
class SceneMeta:
    """Where a scene is: what retrieval needs before it fetches any text."""

    key: int  # the catalog row
    scene_id: str
    video_id: str
    video_path: str
    scene_index: int
    start: float
    end: float
    audio_events: list[str] | None
    speakers: list[str] | None


class SceneCatalog:
    def __init__(self, table: pa.Table, alive: np.ndarray, stamps: Mapping[str, int], modalities: Sequence[str]):
        self.table = table
        self.alive = alive.astype(bool)
        self.stamps = dict(stamps)  # video_id -> indexed_at (us): a changed stamp means re-indexed
        self.modalities = tuple(modalities)
        self._derive()

    @classmethod
    def empty(cls, modalities: Sequence[str]) -> SceneCatalog:
        schema = pa.schema(
            [("scene_id", pa.string()), ("video_id", pa.string()), ("video_path", pa.string()), ("scene_index", pa.int32()),
             ("start", pa.float64()), ("end", pa.float64()), ("audio_events", LABELS_TYPE), ("speakers", LABELS_TYPE),
             ("kf_first", pa.int64()), ("kf_count", pa.int32())]
            + [(f"has_{m}", pa.bool_()) for m in modalities]
        )
        return cls(schema.empty_table(), np.zeros(0, bool), {}, modalities)

    def _derive(self) -> None:
        self.start = self.table.column("start").to_numpy()
        self.end = self.table.column("end").to_numpy()
        self.scene_index = self.table.column("scene_index").to_numpy()
        self.kf_first = self.table.column("kf_first").to_numpy()
        self.kf_count = self.table.column("kf_count").to_numpy()
        self.has = {m: self.table.column(f"has_{m}").to_numpy(zero_copy_only=False) for m in self.modalities}
        # each row's video as a code into video_names (dictionary-encoded in Arrow: no per-row
        # Python strings, which made opening a 1M-scene catalog take seconds)
        encoded = pc.dictionary_encode(self.table.column("video_id").combine_chunks())
        self.video_code = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self.video_names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
        self._labels: dict[str, tuple[pa.Array, np.ndarray]] = {}  # column -> (lower-cased labels, their rows)
        self.first_row: dict[str, int] = {}
        self.n_rows: dict[str, int] = {}
        idx = np.flatnonzero(self.alive)
        if len(idx):
            codes, first, counts = np.unique(self.video_code[idx], return_index=True, return_counts=True)
            # a video's alive rows are contiguous: appended together, killed together
            self.first_row = {self.video_names[c]: int(idx[f]) for c, f in zip(codes, first)}
            self.n_rows = {self.video_names[c]: int(n) for c, n in zip(codes, counts)}

    def __len__(self) -> int:
        return self.table.num_rows

    def append(self, scenes: pa.Table) -> np.ndarray:
        """Append scenes (scalar columns + ``has_<modality>`` flags), sorted by video and index."""
        scenes = scenes.sort_by([("video_id", "ascending"), ("scene_index", "ascending")]).select(self.table.column_names)
        rows = np.arange(len(self), len(self) + scenes.num_rows, dtype=np.int64)
        self.table = pa.concat_tables([self.table, scenes.cast(self.table.schema)]).combine_chunks()
        self.alive = np.concatenate([self.alive, np.ones(scenes.num_rows, bool)])
        self._derive()
        return rows

    def kill_videos(self, video_ids: Sequence[str]) -> np.ndarray:
        mask = self.alive & pc.is_in(self.table.column("video_id"), value_set=pa.array(list(video_ids), pa.string())).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(mask)
        self.alive[rows] = False
        for v in video_ids:
            self.stamps.pop(v, None)
        self._derive()
        return rows

    def rows(self, where: SceneFilter) -> np.ndarray | None:
        """Matching rows straight from the videos' row ranges when the filter names videos
        (O(selected rows)); None when it does not (use :meth:`mask`)."""
        if not where.video_ids:
            return None
        ranges = [np.arange(self.first_row[v], self.first_row[v] + self.n_rows[v]) for v in where.video_ids if v in self.first_row]
        rows = np.concatenate(ranges) if ranges else np.zeros(0, np.int64)
        if where.path_glob is not None and len(rows):
            like = pc.match_like(self.table.column("video_path").take(pa.array(rows)), glob_to_like(where.path_glob))
            rows = rows[like.to_numpy(zero_copy_only=False)]
        if where.time_from is not None:
            rows = rows[self.end[rows] > where.time_from]
        if where.time_to is not None:
            rows = rows[self.start[rows] < where.time_to]
        for column, wanted in where.labels():
            if len(rows):
                rows = rows[self.labelled(column, wanted)[rows]]
        return rows

    def labelled(self, column: str, wanted: Sequence[str]) -> np.ndarray:
        """Whether each row has any of the ``wanted`` labels in ``column`` (case-insensitive), as
        a boolean array over all rows."""
        if column not in self._labels:
            lists = self.table.column(column).combine_chunks()
            self._labels[column] = (pc.utf8_lower(lists.flatten()), pc.list_parent_indices(lists).to_numpy())
        values, parents = self._labels[column]
        hit = pc.is_in(values, value_set=pa.array([w.lower() for w in wanted], pa.string())).to_numpy(zero_copy_only=False)
        out = np.zeros(len(self), bool)
        out[parents[hit]] = True
        return out

    def mask(self, where: SceneFilter | None) -> np.ndarray:
        """Alive rows matching the filter, as a boolean array over all rows."""
        m = self.alive.copy()
        if where is None:
            return m
        if where.video_ids:
            m &= pc.is_in(self.table.column("video_id"), value_set=pa.array(list(where.video_ids), pa.string())).to_numpy(zero_copy_only=False)
        if where.path_glob is not None:
            like = pc.match_like(self.table.column("video_path"), glob_to_like(where.path_glob))
            m &= like.to_numpy(zero_copy_only=False)
        if where.time_from is not None:
            m &= self.end > where.time_from
        if where.time_to is not None:
            m &= self.start < where.time_to
        for column, wanted in where.labels():
            m &= self.labelled(column, wanted)
        return m

    def locate(self, batch) -> np.ndarray:
        """The row of each scene in an Arrow batch/table with ``video_id`` and ``scene_index``
        columns; -1 where the video is not (or no longer) in the catalog."""
        first = np.fromiter((self.first_row.get(v, -1) for v in batch.column("video_id").to_pylist()), np.int64, batch.num_rows)
        return np.where(first >= 0, first + batch.column("scene_index").to_numpy().astype(np.int64), -1)

    def row_of(self, scene_id: str) -> int | None:
        video_id, _, index = scene_id.rpartition(":")
        first = self.first_row.get(video_id)
        if first is None:
            return None
        row = first + int(index)
        return row if row < len(self) and self.alive[row] and self.scene_index[row] == int(index) else None

    def meta(self, rows: Sequence[int]) -> list[SceneMeta]:
        rows = np.asarray(rows, dtype=np.int64)
        t = self.table.take(pa.array(rows))
        cols = [t.column(c).to_pylist() for c in SCALARS]
        return [SceneMeta(int(r), *vals) for r, vals in zip(rows, zip(*cols))]

    def video_ids(self, rows) -> np.ndarray:
        """Each row's video id (an object array)."""
        return self.video_names[self.video_code[np.asarray(rows, dtype=np.int64)]]

    def scene_ids(self, rows: Sequence[int]) -> list[str]:
        return self.table.column("scene_id").take(pa.array(np.asarray(rows, dtype=np.int64))).to_pylist()

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        table = self.table.append_column("alive", pa.array(self.alive))
        info = {"stamps": self.stamps, "modalities": self.modalities}
        with atomic_path(path) as tmp:
            pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(info).encode()}), tmp)

    @classmethod
    def load(cls, path: Path) -> SceneCatalog:
        table = pq.read_table(path)
        info = json.loads(table.schema.metadata[META_KEY])
        alive = table.column("alive").to_numpy(zero_copy_only=False)
        table = table.drop_columns(["alive"]).replace_schema_metadata(None).combine_chunks()  # one chunk: fast takes
        return cls(table, alive, info["stamps"], info["modalities"])


# -- the video level ----------------------------------------------------------------------------

VIDEO_SAMPLE = 4096  # videos the moments are drawn from (all of them when fewer)
SKETCH_DIMS = 64  # principal components per modality in the shortlist sketch
EXACT_BELOW = 2048  # from this many videos the retriever shortlists them by the sketch


def video_vectors(videos: pa.Table, fingerprints: Mapping[str, EncoderFingerprint]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each modality's global vectors as one matrix, a row per video of ``videos`` (zeros where
    it has none: views of the mapped file, nothing copied), and which rows are present."""
    vectors, present = {}, {}
    for m, fp in fingerprints.items():
        name = vector_column(m)
        if name not in videos.column_names:
            continue
        column = videos.column(name)
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        if not len(column):
            vectors[m], present[m] = np.zeros((0, fp.dim), np.float32), np.zeros(0, bool)
            continue
        present[m] = column.is_valid().to_numpy(zero_copy_only=False)
        if column.null_count:  # a null list's slot may hold no values: fill it with zeros
            column = pc.if_else(column.is_valid(), column, pa.scalar([0.0] * fp.dim, column.type))
            column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        vectors[m] = column.values.to_numpy(zero_copy_only=False).reshape(len(column), fp.dim)
    return vectors, present


def derive_video_level(vectors: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray],
                       exact_below: int = EXACT_BELOW) -> dict[str, np.ndarray]:
    """What the video prior needs beyond the vectors, computed once per snapshot: for each
    modality held by at least two videos the moments of a fixed sample of them (``<m>.mean``,
    ``<m>.cov``, ``<m>.n``); with ``exact_below`` videos or more, also each modality's centre
    and top ``SKETCH_DIMS`` principal axes (``<m>.centre``, ``<m>.axes``) and ``sketch``: every
    video's projections on them, concatenated (float16, what the shortlist scans)."""
    from egorag.stats import Moments

    out: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    used = [m for m in sorted(vectors) if present[m].sum() >= 2]  # one video cannot be standardised
    for m in used:
        positions = np.flatnonzero(present[m])
        sample = positions if len(positions) <= VIDEO_SAMPLE else np.sort(rng.choice(positions, VIDEO_SAMPLE, replace=False))
        moments = Moments.of(vectors[m][sample])
        out.update({f"{m}.mean": moments.mean, f"{m}.cov": moments.cov, f"{m}.n": np.array(moments.n)})
    n_videos = len(next(iter(present.values()))) if present else 0
    if used and n_videos >= exact_below:
        parts = []
        for m in used:
            moments = Moments(out[f"{m}.mean"], out[f"{m}.cov"], int(out[f"{m}.n"]))
            centre, axes = moments.mean.astype(np.float32), moments.principal_axes(SKETCH_DIMS)
            out[f"{m}.centre"], out[f"{m}.axes"] = centre, axes
            parts.append(np.where(present[m][:, None], (vectors[m] - centre) @ axes.T, 0.0).astype(np.float32))
        out["sketch"] = np.concatenate(parts, axis=1).astype(np.float16)
    return out
