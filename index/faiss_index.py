"""One modality's FAISS index: the options, the index kinds egorag builds, and the search of one
column (labels are catalog rows; filters are bitmap selectors; an optional GPU mirror)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np

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
    sketch_threshold: int = 5_000  # from this many scenes, a fused sketch generates candidates (index/sketch.py); 0: never
    warm: bool = True  # map the files' pages in the background once a query is answered (index/prefault.py)
    split_scan: bool = True  # one query's sketch scan on every core, in parts (index/sketch.py); False: on one


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
            from index.torch_exact import TorchExactIndex

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
