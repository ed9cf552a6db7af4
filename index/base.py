"""The SceneStore contract every storage backend fulfils."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from egorag.filters import SceneFilter
from egorag.schema import EncoderFingerprint, Scene, Video

#: What reading a missing, torn or damaged index file raises (FAISS raises RuntimeError; Arrow's
#: ArrowInvalid is a ValueError; a truncated ``.npz`` raises BadZipFile or EOFError). Such a file
#: is derived again from the store, never a failed query.
UNREADABLE = (OSError, ValueError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile)


#: One query's ranked candidates: (scene_id, cosine similarity), best first.
ColumnHits = list[tuple[str, float]]


@runtime_checkable
class SceneStore(Protocol):
    """Storage of videos and their scene records, with per-modality vector search."""

    @property
    def fingerprints(self) -> Mapping[str, EncoderFingerprint]: ...

    def add_video(self, video: Video, scenes: Sequence[Scene]) -> None:
        """Write the scenes, then mark the video complete: it becomes visible atomically."""

    def delete_video(self, video_id: str) -> bool: ...

    def get_video(self, video_id: str) -> Video | None: ...

    def videos(self) -> list[Video]: ...

    def get_scenes(self, scene_ids: Sequence[str]) -> list[Scene]: ...

    def search(
        self, modality: str, vectors: np.ndarray, k: int, where: SceneFilter | None = None
    ) -> list[ColumnHits]: ...
