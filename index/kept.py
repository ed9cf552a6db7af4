"""The retriever's calibration moments (mean and covariance of a fixed sample of a modality's
scene vectors: :class:`retrieval.fusion.Moments`), kept beside the FAISS indexes as
``background-<modality>.npz`` with the key of the store state they were drawn from. A restarted
process's first query then reads a few MB instead of drawing its sample: thousands of scattered
rows per modality (1M scenes with the row copies out of the page cache: 1.2 s of a 2.4 s first
answer). Any other key, or an unreadable file, means draw again."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger("egorag")


def path_for(root: Path, modality: str) -> Path:
    return root / f"background-{modality}.npz"


def load(path: Path, key: np.ndarray):
    """The moments kept at ``path`` for ``key``, or None."""
    from retrieval.fusion import Moments

    try:
        with np.load(path, allow_pickle=False) as z:
            if np.array_equal(z["key"], key):
                return Moments(z["mean"], z["cov"], int(z["n"]))
            logger.debug("%s: drawn for another store state", path)
    except (OSError, KeyError, ValueError) as exc:  # none yet, or unreadable
        logger.debug("%s: not kept (%s)", path, exc)
    return None


def save(path: Path, key: np.ndarray, moments) -> None:
    """Keep ``moments`` for ``key`` (atomically; a read-only store keeps nothing)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, key=key, mean=moments.mean, cov=moments.cov, n=moments.n)
        tmp.replace(path)
    except OSError as exc:  # the next process draws them again
        logger.debug("%s: cannot keep the calibration moments: %s", path, exc)
