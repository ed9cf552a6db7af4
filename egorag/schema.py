"""The one home of egorag's record types: Arrow schemas for the videos and scenes tables, the frozen
dataclasses that mirror them, and the encoder fingerprint written into table metadata."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 1

#: Modalities a scene can carry, in display order. Each has one ``<modality>_vec`` column.
#: ``text`` embeds transcript + caption, ``caption`` the caption alone, ``visual`` the mean of the
#: CLIP keyframe vectors, ``audio`` the CLAP embedding of the scene's sound.
#: (time, text) of each spoken word and each line read on screen: where a text hit's words are.
#: ``speaker``: who said the word, where the speakers were told apart (diarization); else null.
MOMENTS_TYPE = pa.list_(pa.struct([("time", pa.float32()), ("text", pa.string()), ("speaker", pa.string())]))
LABELS_TYPE = pa.list_(pa.string())  # a scene's audio event tags and its speakers

MODALITIES = ("text", "caption", "visual", "audio")

FINGERPRINT_KEY = b"egorag.fingerprint"


def vector_column(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    return f"{modality}_vec"


def vector_matrix(column, dim: int) -> np.ndarray:
    """A vector column (FixedSizeList; an Arrow array or chunked array) as a ``(rows, dim)``
    float32 matrix."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(column) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return np.ascontiguousarray(column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim), dtype=np.float32)


@dataclass(frozen=True)
class EncoderFingerprint:
    """What made a vector column: enough to refuse mixing vectors from different models."""

    modality: str
    encoder: str
    checkpoint: str
    dim: int
    normalized: bool = True

    def setting(self) -> str | None:
        """The config line that selects this encoder again, where one line does: the text
        encoder's model (its checkpoint resolves as ``[text] model``)."""
        return f'[text] model = "{self.checkpoint}"' if self.modality in ("text", "caption") else None

    def to_dict(self) -> dict:
        return {
            "encoder": self.encoder,
            "checkpoint": self.checkpoint,
            "dim": self.dim,
            "normalized": self.normalized,
        }


def encode_fingerprints(fingerprints: Mapping[str, EncoderFingerprint]) -> bytes:
    payload = {
        "schema_version": SCHEMA_VERSION,
        "modalities": {m: fp.to_dict() for m, fp in sorted(fingerprints.items())},
    }
    return json.dumps(payload, sort_keys=True).encode()


def decode_fingerprints(raw: bytes | None) -> dict[str, EncoderFingerprint]:
    if not raw:
        return {}
    payload = json.loads(raw)
    return {
        m: EncoderFingerprint(modality=m, **d) for m, d in payload.get("modalities", {}).items()
    }


def _vec(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def scene_schema(fingerprints: Mapping[str, EncoderFingerprint]) -> pa.Schema:
    """Arrow schema of the scenes table for the given modality encoders."""
    fields = [
        pa.field("scene_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("video_path", pa.string(), nullable=False),
        pa.field("scene_index", pa.int32(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("transcript", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("screen_text", pa.string(), nullable=True),  # on-screen text (OCR), one line per line
        pa.field("moments", MOMENTS_TYPE, nullable=True),  # when each word was said and each screen line shown
        pa.field("audio_events", LABELS_TYPE, nullable=True),  # audio event tags (lower case), best first
        pa.field("speakers", LABELS_TYPE, nullable=True),  # who talks in the scene, most first (diarization)
        pa.field("search_text", pa.string(), nullable=False),  # transcript + caption + screen text + audio events, for BM25
        pa.field("thumbnail", pa.binary(), nullable=True),  # a small JPEG of the scene's middle, whatever modalities ran
    ]
    for modality in MODALITIES:
        fp = fingerprints.get(modality)
        if fp is None:
            continue
        fields.append(pa.field(vector_column(modality), _vec(fp.dim), nullable=True))
        if modality == "visual":
            fields += [
                pa.field("keyframe_vecs", pa.list_(_vec(fp.dim)), nullable=True),
                pa.field("keyframe_times", pa.list_(pa.float64()), nullable=True),
                pa.field("keyframe_jpegs", pa.list_(pa.binary()), nullable=True),
            ]
    return pa.schema(fields, metadata={FINGERPRINT_KEY: encode_fingerprints(fingerprints)})


def video_schema(fingerprints: Mapping[str, EncoderFingerprint]) -> pa.Schema:
    """Arrow schema of the videos table: one row per completely indexed video."""
    fields = [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("duration", pa.float64(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("has_audio", pa.bool_(), nullable=False),
        pa.field("n_scenes", pa.int32(), nullable=False),
        pa.field("indexed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
    for modality in MODALITIES:
        fp = fingerprints.get(modality)
        if fp is not None:
            fields.append(pa.field(vector_column(modality), _vec(fp.dim), nullable=True))
    return pa.schema(fields, metadata={FINGERPRINT_KEY: encode_fingerprints(fingerprints)})


@dataclass(frozen=True)
class Word:
    """One transcribed word with its absolute time in the video, in seconds."""

    start: float
    end: float
    text: str
    probability: float = 1.0
    speaker: str | None = None  # who said it, where the speakers were told apart


class Moment(NamedTuple):
    """When something was said or shown: a spoken word (with its speaker when known) or a line
    read on screen."""

    time: float
    text: str
    speaker: str | None = None


@dataclass(frozen=True)
class SceneSpan:
    """A scene's boundaries, before any encoding."""

    index: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Keyframes:
    """A scene's visual multi-vector: keyframe embeddings, their times, JPEG thumbnails."""

    vectors: np.ndarray  # (n, dim) float32, L2-normalised
    times: tuple[float, ...]
    jpegs: tuple[bytes, ...] = ()
    pooled: np.ndarray | None = None  # a clip encoder's (X-CLIP) scene vector; None: the keyframes' mean


@dataclass(frozen=True)
class Scene:
    """One scene record, mirroring a row of the scenes table."""

    scene_id: str
    video_id: str
    video_path: str
    scene_index: int
    start: float
    end: float
    transcript: str = ""
    caption: str = ""
    vectors: Mapping[str, np.ndarray | None] = field(default_factory=dict)
    keyframes: Keyframes | None = None
    screen_text: str = ""  # on-screen text read by OCR, one line per line
    moments: tuple[Moment, ...] = ()  # each spoken word and each screen line, as it appeared
    audio_events: tuple[str, ...] = ()  # audio event tags, best first
    speakers: tuple[str, ...] = ()  # who talks in the scene, most first
    thumbnail: bytes | None = None  # JPEG; written at index time, read only by thumbnail lookups

    def to_row(self) -> dict:
        row = {
            "scene_id": self.scene_id,
            "video_id": self.video_id,
            "video_path": self.video_path,
            "scene_index": self.scene_index,
            "start": float(self.start),
            "end": float(self.end),
            "transcript": self.transcript,
            "caption": self.caption,
            "screen_text": self.screen_text,
            "moments": [{"time": float(m.time), "text": m.text, "speaker": m.speaker} for m in self.moments],
            "audio_events": list(self.audio_events),
            "speakers": list(self.speakers),
            "search_text": "\n".join(t for t in (self.transcript, self.caption, self.screen_text, " ".join(self.audio_events)) if t),
            "thumbnail": self.thumbnail,
        }
        for modality, vec in self.vectors.items():
            row[vector_column(modality)] = None if vec is None else vec.astype(np.float32)
        if self.keyframes is not None:
            row["keyframe_vecs"] = list(self.keyframes.vectors.astype(np.float32))
            row["keyframe_times"] = list(self.keyframes.times)
            row["keyframe_jpegs"] = list(self.keyframes.jpegs)
        return row


def scene_id(video_id: str, index: int) -> str:
    return f"{video_id}:{index:05d}"


@dataclass(frozen=True)
class VideoInfo:
    """What probing a media file tells before decoding it."""

    path: str
    duration: float
    fps: float
    width: int
    height: int
    has_audio: bool
    size_bytes: int


@dataclass(frozen=True)
class Video:
    """One completely indexed video, mirroring a row of the videos table."""

    video_id: str
    path: str
    content_hash: str
    info: VideoInfo
    n_scenes: int
    global_vectors: Mapping[str, np.ndarray | None] = field(default_factory=dict)

    def summary(self) -> dict:
        """What ``egorag videos --json`` and the server's ``/videos`` list for the video."""
        return {"video_id": self.video_id, "path": self.path, "duration": self.info.duration, "scenes": self.n_scenes,
                "has_audio": self.info.has_audio}


def videos_from_table(table: pa.Table, modalities: tuple[str, ...] = ()) -> list[Video]:
    """Videos from rows of the videos table; global vectors of ``modalities`` when present."""
    videos = []
    for row in table.to_pylist():
        info = VideoInfo(row["path"], row["duration"], row["fps"], row["width"], row["height"], row["has_audio"], row["size_bytes"])
        vectors = {
            m: None if row.get(vector_column(m)) is None else np.asarray(row[vector_column(m)], np.float32)
            for m in modalities
        }
        videos.append(Video(row["video_id"], row["path"], row["content_hash"], info, row["n_scenes"], vectors))
    return videos


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Build an Arrow table from row dicts, filling absent columns with nulls."""
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)
