"""Everything over vectors: one FAISS index per modality (options, kinds, a column's search with
bitmap filters and an optional GPU mirror), the row-ordered float32 copies that re-score
candidates exactly, and the fused sketch that draws a large store's candidates by their whole
fused score. Labels and rows are catalog rows throughout.

**Row copies.** Row ``r`` holds catalog row ``r``'s vector (zeros where the scene has none), so
re-scoring candidates, drawing calibration samples, scoring a filter's few rows exactly and
rebuilding an index are array indexing; the IVF indexes themselves keep only 8-bit codes.
Float32, not float16: numpy converts float16 at ~3.4 ns per value here, which made gathering a
query's candidates 10x slower than the gather itself. A raw little-endian file, memory-mapped;
rows are only ever appended, so a snapshot that mapped the first ``n`` rows keeps a consistent
view while a later one grows the file (:mod:`index.files`).

**The fused sketch.**
The fused sketch: a small code per scene whose inner product with one query vector
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

import math
import mmap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from index.files import read_arrays, write_arrays

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]

@dataclass(frozen=True)
class FaissOptions:
    kind: IndexKind = "auto"
    ivf_threshold: int = 200_000  # below this many vectors, exact flat search
    nprobe: int = 32
    hnsw_m: int = 32
    ef_search: int = 128
    rebuild_fraction: float = 0.2  # HNSW: rebuild once this share of vectors is deleted
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where unfiltered searches run
    exact_below: int = 20_000  # a filter passing fewer rows is scored exactly, without the index
    sketch_threshold: int = 5_000  # from this many scenes, a fused sketch generates candidates (the fused sketch, below); 0: never
    split_scan: bool = True  # one query's sketch scan on every core, in parts (the fused sketch, below); False: on one


class ColumnIndex:
    """One modality's FAISS index; labels are catalog rows."""

    def __init__(self, index, kind: str, dead: set[int] | None = None, mapped_from: str | None = None, dirty: bool = True):
        self.index = index
        self.kind = kind
        self.dead = dead or set()  # HNSW tombstones (HNSW cannot remove)
        self.gpu = None  # a GPU mirror for unfiltered searches (see attach_gpu)
        self.mapped_from = mapped_from  # the file a read-only memory-mapped index was opened from
        self.dirty = dirty  # changed since it was last written

    def _writable(self) -> None:
        """A memory-mapped IVF or flat index is read-only (its lists or vectors stay in the
        file: changing it aborts the process, and writing an IVF one would save only a reference
        to that file): read it into memory first."""
        import faiss

        if self.mapped_from is not None:
            self.index = faiss.read_index(self.mapped_from)
            self.mapped_from = None
            if self.kind == "ivf":  # written with a direct map before build_index dropped it
                faiss.extract_index_ivf(self.index).set_direct_map_type(faiss.DirectMap.NoMap)
        self.dirty = True

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        if len(rows):
            self._writable()
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), rows.astype(np.int64))
        self.gpu = None

    def remove(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        self._writable()
        if self.kind == "hnsw":
            self.dead |= set(rows.tolist())
        else:
            self.index.remove_ids(rows.astype(np.int64))
        self.gpu = None

    def attach_gpu(self, device: str) -> str:
        """Mirror the index on the GPU: faiss-gpu when installed, else an exact torch search
        (flat indexes only). Returns what was attached."""
        import faiss

        if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            self._gpu_res = faiss.StandardGpuResources()
            self.gpu = ("faiss", faiss.index_cpu_to_gpu(self._gpu_res, int(device.partition(":")[2] or 0), self.index))
            return "faiss-gpu"
        if self.kind == "flat" and self.ntotal:
            self.gpu = ("torch", TorchExactIndex(self.index.index.reconstruct_n(0, self.ntotal), device=device))
            return "torch"
        return "none"

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None, options: FaissOptions) -> tuple[np.ndarray, np.ndarray]:
        """Scores and rows (-1 where fewer than k); ``allowed`` is a boolean mask over rows."""
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.ntotal == 0 or (allowed is not None and not allowed.any()):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        fetch = min(k, self.ntotal)
        if allowed is None and self.gpu is not None:
            kind, gpu_index = self.gpu
            if kind == "faiss":
                return gpu_index.search(queries, fetch)
            scores, positions = gpu_index.search(queries, fetch)  # torch: positions in the flat index
            return scores, faiss.vector_to_array(self.index.id_map)[positions]
        selector = bits = None
        if allowed is not None:  # a bitmap selector: O(rows / 8), however many rows pass
            bits = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
        with single_threaded(len(queries) == 1):
            scores, rows = self.index.search(queries, fetch, params=self._params(selector, options))
        del bits  # the selector reads this buffer during the search
        return scores, rows

    def _params(self, selector, options: FaissOptions):
        import faiss

        if self.kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=options.nprobe)
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=options.ef_search)
        return faiss.SearchParameters(sel=selector) if selector is not None else None


def ivf_lists(n: int) -> int:
    return max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))


def build_index(vectors: np.ndarray, kind: IndexKind, options: FaissOptions, n: int | None = None):
    """An index taking user ids (``add_with_ids``); inner product on unit vectors. ``n`` is how
    many vectors it will hold (default: ``len(vectors)``); IVF is trained on ``vectors`` (a sample
    of them when many).

    IVF stores 8-bit scalar-quantised codes: the index only generates candidates, which the
    retriever re-scores exactly from the float32 row copies, so the codes need not be exact; a
    quarter of the memory traffic of IVF-Flat makes a probe about twice as fast (measured on
    400k x 512: 1.06 vs 2.01 ms, 99.6 % of the same top 100)."""
    import faiss

    dim = vectors.shape[1]
    n = len(vectors) if n is None else n
    if kind == "auto":
        kind = "flat" if n < options.ivf_threshold else "ivf"
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), kind
    if kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, options.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = 80
        return faiss.IndexIDMap2(base), kind
    if kind == "ivf":
        nlist = ivf_lists(n)
        base = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT, False)
        rng = np.random.default_rng(0)
        m = len(vectors)
        sample = vectors if m <= 64 * nlist else vectors[rng.choice(m, 64 * nlist, replace=False)]
        base.train(np.ascontiguousarray(sample, dtype=np.float32))
        # IVF keeps user ids natively (IndexIDMap2.remove_ids assumes the wrapped index compacts
        # its ids, which IVF does not). No direct map: removing ids then scans the lists (4 ms
        # at 1M), but a hashtable map is rebuilt on every open (50-100 ms per 1M-row column).
        return base, kind
    raise ValueError(f"unknown FAISS index kind {kind!r}; expected auto, flat, ivf or hnsw")


@contextmanager
def single_threaded(active: bool) -> Iterator[None]:
    """One query is bound by memory bandwidth: extra OpenMP threads only spin, and on a small
    machine they steal the cores numpy needs next (measured: 50 ms with 2 threads, 20 ms with 1,
    for one flat 100k x 512 scan on 2 cores)."""
    import faiss

    if not active:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


# -- row copies ---------------------------------------------------------------------------

DTYPE = np.dtype("<f4")
PAGE = mmap.PAGESIZE


class RowVectors:
    """An ``(n, dim)`` matrix (float32 unless told), in memory or memory-mapped from ``path``."""

    def __init__(self, dim: int, path: Path | None = None, dtype: np.dtype = DTYPE):
        self.dim = dim
        self.path = path
        self.dtype = np.dtype(dtype)
        self.data: np.ndarray = np.zeros((0, dim), self.dtype)
        self._map: mmap.mmap | None = None  # the read-only mapping :meth:`open` made

    def __len__(self) -> int:
        return len(self.data)

    @classmethod
    def open(cls, path: Path, dim: int, n: int, dtype: np.dtype = DTYPE) -> RowVectors | None:
        """Map the first ``n`` rows of ``path`` read-only; None when the file is missing or
        shorter (a store written before these files existed: the caller refills them)."""
        out = cls(dim, path, dtype)
        if not path.exists() or path.stat().st_size < n * dim * out.dtype.itemsize:
            return None
        if n:
            with open(path, "rb") as f:
                out._map = mmap.mmap(f.fileno(), n * dim * out.dtype.itemsize, access=mmap.ACCESS_READ)
            out.data = np.frombuffer(out._map, out.dtype, count=n * dim).reshape(n, dim)
        return out

    def prefetch(self, ranges) -> None:
        """Ask the kernel to read the rows ``[first, first + count)`` of each of ``ranges`` ahead
        (``MADV_WILLNEED``) when the file is mapped read-only: a query's scattered rows then
        come off a cold disk together, not one page fault after another."""
        if self._map is None:
            return
        row = self.dim * self.dtype.itemsize
        for first, count in ranges:
            start = (int(first) * row) // PAGE * PAGE
            self._map.madvise(mmap.MADV_WILLNEED, start, int(first + count) * row - start)

    def resize(self, n: int) -> None:
        """Grow to ``n`` rows; new rows are zeros until written."""
        if n == len(self):
            return
        if self.path is None:
            grown = np.zeros((n, self.dim), self.dtype)
            grown[: min(n, len(self))] = self.data[:n]
            self.data = grown
            return
        self.flush()
        self.data, self._map = np.zeros((0, self.dim), self.dtype), None  # drop the old map before resizing the file
        with open(self.path, "ab") as f:
            f.truncate(n * self.dim * self.dtype.itemsize)  # zero-filled; stale rows past a crash dropped
        if n:
            self.data = np.memmap(self.path, self.dtype, mode="r+", shape=(n, self.dim))

    def write(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Fill rows added by :meth:`resize` (written rows are never rewritten)."""
        if len(rows):
            self.data[rows] = vectors

    def flush(self) -> None:
        if isinstance(self.data, np.memmap) and self.data.flags.writeable:
            self.data.flush()

    def take(self, rows) -> np.ndarray:
        """The vectors of ``rows`` (sorted access is faster on a cold file)."""
        return np.asarray(self.data[np.asarray(rows, dtype=np.int64)])


class TorchExactIndex:
    """Exact inner-product search on a torch device, blockwise: each block of the matrix is scored
    and reduced to its top-k at once, so the full (queries x vectors) score matrix never exists.
    Used on CUDA hosts without faiss-gpu; runs on the CPU too (tests)."""

    def __init__(self, vectors: np.ndarray, device: str = "cuda", dtype: str = "float16", block: int = 1 << 20):
        import torch

        self.torch = torch
        self.device = device
        self.dtype = getattr(torch, dtype)
        self.block = block
        self.matrix = torch.from_numpy(np.ascontiguousarray(vectors)).to(device=device, dtype=self.dtype)

    @classmethod
    def from_tensor(cls, matrix, block: int = 1 << 20) -> TorchExactIndex:
        """Wrap a matrix already on its device (no copy)."""
        import torch

        self = cls.__new__(cls)
        self.torch, self.device, self.dtype, self.block, self.matrix = torch, matrix.device, matrix.dtype, block, matrix
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = self.torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device, self.dtype)
        scores, ids = self.search_tensor(q, k)
        return scores.float().cpu().numpy(), ids.cpu().numpy()

    def search_tensor(self, q, k: int):
        """Top-k on device tensors: (scores, row ids), best first."""
        torch = self.torch
        n = self.matrix.shape[0]
        k = min(k, n)
        best_s = best_i = None
        with torch.inference_mode():
            for start in range(0, n, self.block):
                scores = q @ self.matrix[start : start + self.block].T
                s, i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
                i = i + start
                if best_s is None:
                    best_s, best_i = s, i
                else:
                    merged_s = torch.cat([best_s, s], dim=1)
                    merged_i = torch.cat([best_i, i], dim=1)
                    best_s, order = torch.topk(merged_s, k, dim=1)
                    best_i = torch.gather(merged_i, 1, order)
        return best_s, best_i


# -- the fused sketch ---------------------------------------------------------------------

RANK = 128  # principal components kept per modality
PQ_DSUB = 4  # dimensions per 4-bit sub-quantiser
TRAIN_ROWS = 65_536  # scenes the principal axes and the quantisers are learned from
SCORE_BLOCK = 256  # rows converted to float32 at a time when scoring on the 8-bit codes
PART_MIN_ROWS = 131_072  # one query's scan is split over the cores in parts of at least this many rows


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

    def save(self, root: Path) -> dict:
        """Write the axes, rotation and PQ index into the snapshot ``root`` (the 8-bit codes are
        written as they grow) and remove codes of earlier trainings; returns what the manifest
        records of the sketch."""
        import faiss

        arrays = {"rotation": self.rotation, "lo": self.lo, "step": self.step}
        for m in self.modalities:
            arrays[f"mean_{m}"], arrays[f"basis_{m}"] = self.means[m], self.bases[m]
        write_arrays(root / "sketch.arrow", arrays)
        faiss.write_index(self.pq, str(root / "sketch.faiss"))  # a staged snapshot: no reader yet
        codes = self.codes.path.name
        for old in root.glob("sketch-*.u8"):
            if old.name != codes:
                old.unlink()
        return {"modalities": list(self.modalities), "rows": len(self), "trained_rows": self.trained_rows, "codes": codes}

    @staticmethod
    def remove(root: Path) -> None:
        for path in [root / "sketch.arrow", root / "sketch.faiss", *root.glob("sketch-*.u8")]:
            path.unlink(missing_ok=True)

    @classmethod
    def load(cls, root: Path, info: Mapping, writable: bool = False) -> FusedSketch:
        """The sketch of a snapshot whose files its manifest vouches for (``info``: what
        :meth:`save` returned)."""
        import faiss

        arrays = read_arrays(root / "sketch.arrow")
        dim = len(arrays["rotation"])
        codes = RowVectors.open(root / info["codes"], dim, info["rows"], np.uint8)
        pq = faiss.read_index(str(root / "sketch.faiss"))
        mods = info["modalities"]
        return cls(mods, {m: arrays[f"mean_{m}"] for m in mods}, {m: arrays[f"basis_{m}"] for m in mods},
                   arrays["rotation"], arrays["lo"], arrays["step"], pq, codes, info["trained_rows"])
