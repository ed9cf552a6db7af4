"""The fused sketch: a small code per scene whose inner product with one query vector
approximates the scene's whole calibrated fused score, so that candidates come from the fusion
the retriever ranks by rather than from each modality's own top list.

Why: with weighted fusion a scene in the fused top 10 is often far down every single modality's
list (it is good in several, best in none). On a 1M-scene store, pools of 100 per modality held
56 % of the exact fused top 10, and pools of 1,000 only 88 %. The fused score is linear in the
concatenated vectors: ``sum_m a_m q_m . x_m`` with ``a_m = w_m / (W sigma_m)`` for one query (plus
terms equal for every scene), so one query vector ranks every scene by it.

A scene's sketch: each modality's vector, centred and projected on that modality's top
``RANK`` principal components (a scene without the modality gets the zero block: the collection
average, as fusion counts it), the blocks concatenated, then turned by a fixed random rotation
that spreads the variance evenly over the dimensions, as product quantisation wants. Two codes:

- 4-bit product-quantised fast-scan codes (FAISS ``IndexPQFastScan``, 4 dimensions per
  sub-quantiser): the whole store is scanned for the widest pool (~6 ms per 1M scenes on one
  core here). FAISS scans one query on one core; a large store's single query is split into one
  part per core (row ranges of the same codes, searched in parallel and merged in C++);
- 8-bit scalar codes (one byte per dimension, memory-mapped): the pool, plus any other candidate,
  is re-scored on them before the exact re-scoring of the best few.

Measured on the 1M-scene benchmark store (independent modalities: the hard case): of the exact
fused top 10, the best 3,000 by PQ re-scored on 8-bit codes down to 300 held 97 %.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from index.base import UNREADABLE
from index.files import atomic_path
from index.rowvectors import RowVectors

logger = logging.getLogger("egorag")

RANK = 128  # principal components kept per modality
PQ_DSUB = 4  # dimensions per 4-bit sub-quantiser
TRAIN_ROWS = 65_536  # scenes the principal axes and the quantisers are learned from
SCORE_BLOCK = 256  # rows converted to float32 at a time when scoring on the 8-bit codes
PART_MIN_ROWS = 131_072  # one query's scan is split over the cores in parts of at least this many rows
FILES = ("sketch.npz", "sketch.json", "sketch.faiss")  # and the 8-bit codes, named in sketch.json


class FusedSketch:
    """Sketch codes of catalog rows ``0 .. len - 1`` (every row, dead or alive; the caller drops
    dead rows from results). Rows are only ever appended."""

    def __init__(self, modalities: Sequence[str], means: Mapping[str, np.ndarray], bases: Mapping[str, np.ndarray],
                 rotation: np.ndarray, lo: np.ndarray, step: np.ndarray, pq, codes: RowVectors, trained_rows: int):
        self.modalities = tuple(modalities)
        self.means = {m: np.asarray(means[m], np.float32) for m in self.modalities}
        self.bases = {m: np.asarray(bases[m], np.float32) for m in self.modalities}  # (rank, dim)
        self.rotation = np.asarray(rotation, np.float32)
        self.lo = np.asarray(lo, np.float32)
        self.step = np.asarray(step, np.float32)
        self.pq = pq  # IndexIDMap(IndexPQFastScan): labels are catalog rows
        self.codes = codes  # (rows, dim) uint8
        self.trained_rows = trained_rows
        self._split: tuple[int, object] | None = None  # (rows covered, IndexShards of the parts)

    @property
    def dim(self) -> int:
        return len(self.rotation)

    def __len__(self) -> int:
        return len(self.codes)

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def train(cls, blocks: Mapping[str, tuple[np.ndarray, np.ndarray]], n: int, trained_rows: int, path: Path | None = None) -> FusedSketch:
        """Learn the principal axes, the rotation and both quantisers from a sample of ``n``
        rows (``blocks`` as :meth:`project` takes them); ``trained_rows``: the store's size then;
        ``path``: the folder the 8-bit codes are mapped from (None: in memory)."""
        import faiss

        from egorag.stats import Moments

        modalities = tuple(m for m, (x, _) in blocks.items() if len(x) >= 2)
        if not modalities:
            raise ValueError("a fused sketch needs vectors of at least one modality")
        means, bases = {}, {}
        for m in modalities:
            moments = Moments.of(blocks[m][0])
            means[m] = moments.mean.astype(np.float32)
            bases[m] = moments.principal_axes(RANK)
        width = sum(len(b) for b in bases.values())
        dim = -(-width // PQ_DSUB) * PQ_DSUB
        rotation = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, dim)))[0].astype(np.float32)
        # a new file per training: a reader keeps the codes that match the axes it loaded
        name = f"sketch-{np.random.default_rng().integers(1 << 62):x}.u8"
        codes = RowVectors(dim, path / name if path is not None else None, np.uint8)
        sketch = cls(modalities, means, bases, rotation, np.zeros(dim), np.ones(dim), None, codes, trained_rows)
        train = sketch.project(blocks, n)
        sketch.lo = train.min(axis=0)
        sketch.step = np.maximum(train.max(axis=0) - sketch.lo, 1e-6) / 255.0
        pq = faiss.IndexPQFastScan(dim, dim // PQ_DSUB, 4, faiss.METRIC_INNER_PRODUCT)
        pq.train(np.ascontiguousarray(train))
        sketch.pq = faiss.IndexIDMap(pq)
        return sketch

    def project(self, blocks: Mapping[str, tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
        """Sketches of ``n`` rows from ``blocks``: modality -> (the vectors of the rows that have
        it, in row order; a boolean mask of those rows)."""
        out = np.zeros((n, sum(len(b) for b in self.bases.values())), np.float32)
        at = 0
        for m in self.modalities:
            basis = self.bases[m]
            if m in blocks:
                vectors, present = blocks[m]
                out[present, at : at + len(basis)] = (vectors - self.means[m]) @ basis.T
            at += len(basis)
        if out.shape[1] < self.dim:
            out = np.pad(out, ((0, 0), (0, self.dim - out.shape[1])))
        return out @ self.rotation

    def append(self, sketches: np.ndarray) -> None:
        """Add the next rows' sketches (row ``len(self)`` onwards)."""
        if not len(sketches):
            return
        first = len(self)
        rows = np.arange(first, first + len(sketches), dtype=np.int64)
        self.pq.add_with_ids(np.ascontiguousarray(sketches, np.float32), rows)
        self.codes.resize(first + len(sketches))
        self.codes.write(rows, np.clip(np.rint((sketches - self.lo) / self.step), 0, 255).astype(np.uint8))
        self.codes.flush()

    # -- querying -----------------------------------------------------------------------------

    def query(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """One query vector from each modality's scaled query (``a_m q_m``); modalities the
        sketch lacks are ignored (the caller searches them separately)."""
        at = 0
        flat = np.zeros(self.dim, np.float32)
        for m in self.modalities:
            basis = self.bases[m]
            if m in parts:
                flat[at : at + len(basis)] = basis @ np.asarray(parts[m], np.float32)
            at += len(basis)
        return self.rotation.T @ flat

    def search(self, queries: np.ndarray, n: int, alive: np.ndarray, split: bool = True) -> list[np.ndarray]:
        """For each query (a row of ``queries``), the ``n`` rows with the highest PQ score (dead
        rows dropped). A batch runs on every core (FAISS splits it by query); so does one query
        on a large store, unless ``split`` is False (:meth:`_split_scan`), else one query runs on
        one core."""
        from index.faiss_index import single_threaded

        queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        if not len(self):
            return [np.zeros(0, np.int64) for _ in queries]
        parts = self._split_scan() if split and len(queries) == 1 else None
        if parts is not None:
            _, found = parts.search(queries, min(n, len(self)))
        else:
            with single_threaded(len(queries) == 1):
                _, found = self.pq.search(queries, min(n, len(self)))
        out = []
        for rows in found:
            rows = rows[rows >= 0]
            out.append(rows[alive[rows]])
        return out

    def _split_scan(self):
        """The PQ codes as one part per core, for one query's scan (FAISS scans a single query
        on one core): contiguous row ranges, each a fast-scan index holding a copy of its range
        of the codes, searched by FAISS's threaded ``IndexShards``, which merges their top lists
        and numbers their rows on from the previous parts' (the labels, catalog rows, are the
        positions: rows are only appended). Measured at 1M rows on 2 cores: 5.4 -> 3.8 ms for
        the top 3,000; more, smaller parts were slower (each part pays for the whole top-k), so
        a part has at least ``PART_MIN_ROWS`` rows. None when one part would do. Built on first
        need after each append (a copy of the codes: 64 MB and 0.05-0.2 s per 1M rows, measured)."""
        import faiss

        if self._split is not None and self._split[0] == len(self):
            return self._split[1]
        parts = min(faiss.omp_get_max_threads(), len(self) // PART_MIN_ROWS)
        if parts < 2:
            return None
        fast = faiss.downcast_index(self.pq.index)
        row_bytes = fast.M2 // 2  # the codes are packed in blocks of bbs rows, M2 / 2 bytes a row
        codes = faiss.rev_swig_ptr(fast.codes.get(), fast.codes.size())
        per_part = -(-len(self) // (parts * fast.bbs)) * fast.bbs
        split = faiss.IndexShards(fast.d, True, True)  # threaded, successive ids
        for start in range(0, len(self), per_part):
            stop = min(start + per_part, len(self))
            part = faiss.IndexPQFastScan(fast.d, fast.M, fast.nbits, fast.metric_type, fast.bbs)
            part.pq = fast.pq
            part.is_trained = True
            part.ntotal, part.ntotal2 = stop - start, -(-(stop - start) // fast.bbs) * fast.bbs
            faiss.copy_array_to_AlignedTable(codes[start * row_bytes : (start + part.ntotal2) * row_bytes], part.codes)
            split.add_shard(part)  # FAISS's Python layer keeps the part alive with the shards
        self._split = (len(self), split)
        return split

    def scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Each row's score on its 8-bit codes (the accelerator's sync covers every row). In
        blocks of ``SCORE_BLOCK`` rows, so that their float32 copy stays in the CPU cache: 1.62 ->
        1.15 ms for 4,300 rows of the 1M store, against one gather and conversion of them all."""
        weights = self.step * query
        out = np.empty(len(rows), np.float32)
        for at in range(0, len(rows), SCORE_BLOCK):
            # np.take: 2x a memmap's fancy indexing
            out[at : at + SCORE_BLOCK] = np.take(self.codes.data, rows[at : at + SCORE_BLOCK], axis=0).astype(np.float32) @ weights
        return out + float(self.lo @ query)

    # -- persistence --------------------------------------------------------------------------

    def save(self, root: Path) -> None:
        """Write the axes, rotation and PQ index (the 8-bit codes are written as they grow)."""
        import faiss

        arrays = {"rotation": self.rotation, "lo": self.lo, "step": self.step}
        for m in self.modalities:
            arrays[f"mean_{m}"], arrays[f"basis_{m}"] = self.means[m], self.bases[m]
        with atomic_path(root / "sketch.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        with atomic_path(root / "sketch.faiss") as tmp:
            faiss.write_index(self.pq, str(tmp))
        codes = self.codes.path.name if self.codes.path is not None else None
        info = {"modalities": list(self.modalities), "rows": len(self), "trained_rows": self.trained_rows, "codes": codes}
        with atomic_path(root / "sketch.json") as tmp:  # last: it names the codes
            tmp.write_text(json.dumps(info))
        for old in root.glob("sketch-*.u8"):  # codes of earlier trainings
            if old.name != codes:
                old.unlink(missing_ok=True)

    @staticmethod
    def remove(root: Path) -> None:
        for path in [*(root / name for name in FILES), *root.glob("sketch-*.u8")]:
            path.unlink(missing_ok=True)

    @classmethod
    def load(cls, root: Path) -> FusedSketch | None:
        """The persisted sketch, or None when it is missing, incomplete or unreadable (the caller
        rebuilds it from the row copies)."""
        import faiss

        if not all((root / name).exists() for name in FILES):
            return None
        try:
            info = json.loads((root / "sketch.json").read_text())
            if not info.get("codes"):
                return None
            with np.load(root / "sketch.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            dim = len(arrays["rotation"])
            codes = RowVectors.open(root / info["codes"], dim, info["rows"], np.uint8)
            pq = faiss.read_index(str(root / "sketch.faiss"))
            mods = info["modalities"]
            if codes is None or pq.ntotal != info["rows"]:
                return None
            return cls(mods, {m: arrays[f"mean_{m}"] for m in mods}, {m: arrays[f"basis_{m}"] for m in mods},
                       arrays["rotation"], arrays["lo"], arrays["step"], pq, codes, info["trained_rows"])
        except UNREADABLE as exc:
            logger.warning("%s: the fused sketch cannot be read (%s); rebuilding it", root, exc)
            return None
