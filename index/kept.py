"""What the retriever derives from a store state, kept beside the FAISS indexes for the next
process: ``<db>/faiss/kept/<name>.npz``, arrays with the key of the store state they were derived
from (``np.savez``, no pickle).

- ``background-<modality>``: the calibration moments (mean and covariance of a fixed sample of
  the modality's scene vectors: :class:`retrieval.fusion.Moments`). A restarted process's first
  query reads a few MB instead of drawing its sample: thousands of scattered rows per modality
  (1M scenes with the row copies out of the page cache: 1.2 s of a 2.4 s first answer).
- ``videos``: the video level's moments, principal axes and shortlist sketch
  (:meth:`retrieval.video_prior.VideoPrior.derived`): 0.6 s of work at 20,000 videos.

Any other key, or an unreadable file, means derive again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from index.base import UNREADABLE
from index.files import atomic_path

logger = logging.getLogger("egorag")


def path_for(root: Path, name: str) -> Path:
    """Kept files live in their own folder: readers write them without the store's lock, so
    they are not among the search files of the manifest (the zip's CRC-32 checks each array)."""
    return root / "kept" / f"{name}.npz"


def load(path: Path, key: np.ndarray) -> dict[str, np.ndarray] | None:
    """The arrays kept at ``path`` for ``key``, or None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if np.array_equal(z["key"], key):
                return {name: z[name] for name in z.files if name != "key"}
            logger.debug("%s: derived from another store state", path)
    except FileNotFoundError:
        logger.debug("%s: none kept yet", path)
    except (*UNREADABLE, KeyError) as exc:  # damaged (the zip's CRC-32 catches a changed byte)
        logger.warning("%s cannot be read (%s); deriving it again", path, exc)
    return None


def save(path: Path, key: np.ndarray, arrays: Mapping[str, np.ndarray]) -> None:
    """Keep ``arrays`` for ``key`` (atomically; a read-only store keeps nothing)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, key=key, **arrays)
    except OSError as exc:  # the next process derives them again
        logger.debug("%s: cannot keep %s: %s", path, path.stem, exc)
