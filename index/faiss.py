"""FAISS search accelerator over a scene store's vector columns.

One index per modality, built from the LanceDB tables and persisted beside them in
``<db>/faiss/`` (``faiss.write_index`` plus an Arrow id map; no pickle), updated incrementally
when the store changes. Exact (flat) below ``ivf_threshold`` vectors, IVF above (or HNSW when
asked); filters become FAISS ID selectors. faiss-gpu is used when installed; on a CUDA host
without it, :class:`TorchExactIndex` does an exact blockwise GPU search.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from index.base import ColumnHits, SceneFilter

logger = logging.getLogger("egorag")

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


class ColumnIndex:
    """One modality's FAISS index with its label -> scene id map."""

    def __init__(self, index, labels: np.ndarray, scene_ids: list[str], kind: str, dead: set[int] | None = None):
        self.index = index
        self.labels = labels.astype(np.int64)
        self.scene_ids = scene_ids
        self.kind = kind
        self.dead = dead or set()  # HNSW tombstones
        self._by_scene = {s: int(lab) for s, lab in zip(scene_ids, labels)}
        self._by_label = dict(zip(self.labels.tolist(), scene_ids))
        self.gpu = None  # a GPU mirror for unfiltered searches (see attach_gpu)

    def attach_gpu(self, device: str) -> str:
        """Mirror the index on the GPU: faiss-gpu when installed, else an exact torch search
        (flat indexes only). Returns what was attached."""
        import faiss

        if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            self._gpu_res = faiss.StandardGpuResources()
            self.gpu = ("faiss", faiss.index_cpu_to_gpu(self._gpu_res, int(device.partition(":")[2] or 0), self.index))
            return "faiss-gpu"
        if self.kind == "flat" and self.live:
            vectors = self.index.index.reconstruct_n(0, self.index.ntotal)
            self.gpu = ("torch", TorchExactIndex(vectors, device=device))
            return "torch"
        return "none"

    @property
    def live(self) -> int:
        return len(self._by_scene)

    def search(self, queries: np.ndarray, k: int, allowed: list[str] | None, options: FaissOptions) -> list[ColumnHits]:
        import faiss

        if self.live == 0 or (allowed is not None and not allowed):
            return [[] for _ in range(len(queries))]
        selector = keep_alive = None  # FAISS holds raw pointers: keep every selector referenced
        if allowed is not None:
            labels = np.array([self._by_scene[s] for s in allowed if s in self._by_scene], dtype=np.int64)
            if labels.size == 0:
                return [[] for _ in range(len(queries))]
            selector = faiss.IDSelectorBatch(labels)
        elif self.dead:
            keep_alive = faiss.IDSelectorBatch(np.fromiter(self.dead, np.int64))
            selector = faiss.IDSelectorNot(keep_alive)
        fetch = min(k, self.index.ntotal)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.gpu is not None and selector is None:
            kind, gpu_index = self.gpu
            if kind == "faiss":
                scores, labels = gpu_index.search(queries, fetch)
            else:  # torch rows are positions in the flat index: map them to labels
                scores, rows = gpu_index.search(queries, fetch)
                labels = faiss.vector_to_array(self.index.id_map)[rows]
        else:
            scores, labels = self.index.search(queries, fetch, params=self._params(selector, options))
        out = []
        for row_s, row_l in zip(scores, labels):
            out.append([(self._by_label[int(lab)], float(s)) for s, lab in zip(row_s, row_l) if lab >= 0 and int(lab) in self._by_label])
        del keep_alive
        return out

    def _params(self, selector, options: FaissOptions):
        import faiss

        if self.kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=options.nprobe)
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=options.ef_search)
        return faiss.SearchParameters(sel=selector) if selector is not None else None


def build_index(vectors: np.ndarray, kind: IndexKind, options: FaissOptions):
    """A trained, empty index taking user ids (``add_with_ids``), inner product on unit vectors."""
    import faiss

    n, dim = vectors.shape
    if kind == "auto":
        kind = "flat" if n < options.ivf_threshold else "ivf"
    if kind == "flat":
        base = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, options.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = 80
    elif kind == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))
        base = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = vectors if n <= 64 * nlist else vectors[rng.choice(n, 64 * nlist, replace=False)]
        base.train(np.ascontiguousarray(sample, dtype=np.float32))
        # IVF keeps user ids natively. IndexIDMap2.remove_ids assumes the wrapped index compacts
        # its ids on removal (Flat does, IVF does not), so wrapping IVF would corrupt the id map.
        return base, kind
    else:
        raise ValueError(f"unknown FAISS index kind {kind!r}; expected auto, flat, ivf or hnsw")
    return faiss.IndexIDMap2(base), kind


class FaissAccelerator:
    """Per-modality FAISS indexes kept in step with a :class:`~index.lance.LanceSceneStore`."""

    def __init__(self, store, options: FaissOptions = FaissOptions(), persist: bool = True):
        self.store = store
        self.options = options
        self.persist = persist
        self.root = Path(store.uri) / "faiss"
        self.columns: dict[str, ColumnIndex] = {}
        self._synced: int | None = None

    # -- keeping in step with the store -------------------------------------------------------

    def sync(self) -> None:
        """Load persisted indexes and apply what changed in the store since they were written."""
        version = self.store.version
        if self._synced == version:
            return
        for modality in self.store.modalities:
            column = self.columns.get(modality) or self._load(modality)
            ids, vectors = self.store.scene_vectors(modality)
            column = self._update(modality, column, ids, vectors)
            self._place(modality, column)
            self.columns[modality] = column
            if self.persist:
                self._save(modality, column, version)
        self._synced = version

    def _update(self, modality: str, column: ColumnIndex | None, ids: list[str], vectors: np.ndarray) -> ColumnIndex:
        if column is None or (column.kind == "hnsw" and len(column.dead) > self.options.rebuild_fraction * max(1, column.live)):
            return self._build(modality, ids, vectors)
        wanted = set(ids)
        gone = [s for s in column.scene_ids if s not in wanted and column._by_scene.get(s) is not None]
        new = [i for i, s in enumerate(ids) if s not in column._by_scene]
        if not gone and not new:
            return column
        labels, scene_ids, dead = column.labels, list(column.scene_ids), set(column.dead)
        if gone:
            gone_labels = np.array([column._by_scene[s] for s in gone], dtype=np.int64)
            if column.kind == "hnsw":
                dead |= set(gone_labels.tolist())
            else:
                column.index.remove_ids(gone_labels)
            keep = ~np.isin(labels, gone_labels)
            labels, scene_ids = labels[keep], [s for s, k in zip(scene_ids, keep) if k]
        if new:
            start = int(max(column.labels.max(initial=-1), max(dead, default=-1))) + 1
            new_labels = np.arange(start, start + len(new), dtype=np.int64)
            column.index.add_with_ids(np.ascontiguousarray(vectors[new]), new_labels)
            labels = np.concatenate([labels, new_labels])
            scene_ids += [ids[i] for i in new]
        logger.debug("faiss %s: +%d -%d vectors", modality, len(new), len(gone))
        return ColumnIndex(column.index, labels, scene_ids, column.kind, dead)

    def _place(self, modality: str, column: ColumnIndex) -> None:
        """Mirror on the GPU when one is asked for (``cuda``) or present (``auto``)."""
        from egorag.devices import resolve_device

        device = resolve_device("auto" if self.options.device == "auto" else self.options.device)
        if device.startswith("cuda"):
            attached = column.attach_gpu(device)
            logger.info("faiss %s: GPU mirror %s", modality, attached)

    def _build(self, modality: str, ids: list[str], vectors: np.ndarray) -> ColumnIndex:
        dim = self.store.fingerprints[modality].dim
        vectors = vectors.reshape(-1, dim)
        index, kind = build_index(vectors, self.options.kind, self.options)
        labels = np.arange(len(ids), dtype=np.int64)
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors), labels)
        logger.info("built faiss %s index for %s (%d vectors)", kind, modality, len(ids))
        return ColumnIndex(index, labels, list(ids), kind)

    def _paths(self, modality: str) -> tuple[Path, Path, Path]:
        return self.root / f"{modality}.faiss", self.root / f"{modality}.ids.parquet", self.root / f"{modality}.json"

    def _load(self, modality: str) -> ColumnIndex | None:
        import faiss

        index_path, ids_path, meta_path = self._paths(modality)
        if not (index_path.exists() and ids_path.exists() and meta_path.exists()):
            return None
        meta = json.loads(meta_path.read_text())
        table = pq.read_table(ids_path)
        index = faiss.read_index(str(index_path), faiss.IO_FLAG_MMAP)
        return ColumnIndex(index, table.column("label").to_numpy(), table.column("scene_id").to_pylist(), meta["kind"], set(meta.get("dead", [])))

    def _save(self, modality: str, column: ColumnIndex, version: int) -> None:
        import faiss

        self.root.mkdir(parents=True, exist_ok=True)
        index_path, ids_path, meta_path = self._paths(modality)
        faiss.write_index(column.index, str(index_path) + ".tmp")
        pq.write_table(pa.table({"label": column.labels, "scene_id": column.scene_ids}), str(ids_path) + ".tmp")
        meta_path.with_suffix(".json.tmp").write_text(json.dumps({"kind": column.kind, "version": version, "dead": sorted(column.dead)}))
        for p in (index_path, ids_path, meta_path):  # replace together, after all are written
            Path(str(p) + ".tmp").replace(p)

    # -- the SceneStore search contract -------------------------------------------------------

    def search(self, modality: str, vectors: np.ndarray, k: int, where: SceneFilter | None = None) -> list[ColumnHits]:
        self.sync()
        column = self.columns.get(modality)
        queries = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if column is None:
            return [[] for _ in range(len(queries))]
        allowed = None
        if where is not None and not where.is_empty():
            allowed = self.store.filter_ids(where)
        return column.search(queries, k, allowed, self.options)


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

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device, self.dtype)
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
        return best_s.float().cpu().numpy(), best_i.cpu().numpy()
