"""Page-table warming of memory-mapped files (index.prefault) and the accelerator's use of it."""

import os
import resource
import sys

import numpy as np
import pytest

from index.faiss import FaissAccelerator, FaissOptions
from index.lance import LanceSceneStore
from index.prefault import mapped, resident, warm

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_POPULATE_READ is Linux-only")


def faults_touching(a: np.ndarray) -> int:
    """Minor page faults taken while reading one byte of every page of ``a``."""
    flat = a.reshape(-1).view(np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    int(flat[::4096].sum())
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@linux
def test_warmed_mapping_takes_no_faults(tmp_path):
    path = tmp_path / "rows.f32"
    np.arange(16 << 20, dtype=np.float32).tofile(path)  # 64 MB
    int(np.fromfile(path, np.uint8).sum())  # in the page cache, as a reopened store's files are
    cold = faults_touching(np.memmap(path, np.float32, "r"))
    warmed = np.memmap(path, np.float32, "r")
    warm([warmed], budget=0.0).join(timeout=30)  # no disk reads allowed: the pages are cached
    hot = faults_touching(warmed)
    assert cold >= 16, cold  # a fresh mapping faults (each fault maps a run of pages)
    assert hot <= cold // 8, (cold, hot)


@linux
def test_warm_reads_from_disk_only_within_its_free_memory_budget(tmp_path):
    """Pages not in the page cache are read only within the budget: reading more would evict
    cached pages, perhaps the ones the first queries need."""
    path = tmp_path / "rows.u8"
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 255, 8 << 20, dtype=np.uint8).tobytes())  # 8 MB
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # out of the page cache
    os.close(fd)
    a = np.memmap(path, np.uint8, "r")
    before = resident(a)
    if before is None or before.mean() > 0.5:
        pytest.skip("the file could not be dropped from the page cache here")
    warm([a], budget=0.0).join(timeout=30)
    assert resident(a).mean() <= before.mean() + 0.05  # nothing read
    warm([a]).join(timeout=30)  # half of the free memory: far more than 8 MB
    assert resident(a).all()
    assert warm([np.zeros(1 << 20, np.uint8)]) is None  # in memory already: nothing to map


def test_mapped_keeps_each_memory_mapped_array_once(tmp_path):
    path = tmp_path / "a.u8"
    np.zeros(4096, np.uint8).tofile(path)
    a = np.memmap(path, np.uint8, "r")
    assert mapped([a, np.zeros(3), a, np.memmap(path, np.uint8, "r")[:0]]) == [a]
    view = np.memmap(path, np.uint8, "r").view(np.ndarray)  # as index.bm25 keeps its postings
    assert mapped([a, a.view(np.ndarray), view]) == [a, view] and not isinstance(view, np.memmap)


def test_accelerator_warms_what_queries_read_once_per_change(tmp_path, monkeypatch):
    import index.faiss as faiss_mod
    from egorag.schema import EncoderFingerprint
    from tests.test_faiss import DIM, clustered, fill

    store = LanceSceneStore(tmp_path / "db", {"text": EncoderFingerprint("text", "test-hash", "h", DIM)})
    fill(store, clustered(400))
    FaissAccelerator(store, FaissOptions(sketch_threshold=100)).sync()
    handed = []
    monkeypatch.setattr(faiss_mod, "warm", lambda arrays: handed.append(list(arrays)) or None)
    reopened = FaissAccelerator(LanceSceneStore(store.uri), FaissOptions(sketch_threshold=100))
    reopened.sync()
    assert not handed  # not while the first query is being answered
    reopened.warm_up()
    [arrays] = handed  # once, after the open
    assert reopened.sketch is not None and arrays[0] is reopened.sketch.codes.data  # most read first
    assert any(a is reopened.rows["text"].data for a in arrays)
    assert any(a is reopened.texts.postings[0].rows for a in arrays)
    assert len(mapped(arrays)) == sum(a.nbytes > 0 for a in arrays)  # all file mappings
    reopened._synced = None
    reopened.sync()  # nothing changed: no second warm-up
    reopened.warm_up()
    assert len(handed) == 1
    off = FaissAccelerator(LanceSceneStore(store.uri), FaissOptions(sketch_threshold=100, warm=False))
    off.sync()
    off.warm_up()
    assert len(handed) == 1 and off.warming is None
    # the retriever starts it once it has answered
    from egorag.config import RetrievalConfig
    from retrieval.hierarchical import HierarchicalRetriever

    fresh = FaissAccelerator(LanceSceneStore(store.uri), FaissOptions(sketch_threshold=100))
    answered = []
    monkeypatch.setattr(faiss_mod, "warm", lambda arrays: handed.append(answered[:]) or None)
    retriever = HierarchicalRetriever(fresh.store, {}, RetrievalConfig(), backend=fresh)
    real_search = retriever._search
    monkeypatch.setattr(retriever, "_search", lambda *a: answered.append(True) or real_search(*a))
    assert retriever.search_vectors({"text": clustered(1, seed=5)[0]}, None, 5)
    assert handed[-1] == [True]  # the warm-up started after the query's search
