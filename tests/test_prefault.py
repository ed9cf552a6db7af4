"""Page-table warming of memory-mapped files (index.prefault) and the accelerator's use of it."""

import resource
import sys

import numpy as np
import pytest

from index.faiss import FaissAccelerator, FaissOptions
from index.lance import LanceSceneStore
from index.prefault import mapped, warm

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
    thread = warm([warmed])
    if thread is None:
        pytest.skip("no memory figure to budget against")
    thread.join(timeout=30)
    hot = faults_touching(warmed)
    assert cold >= 16, cold  # a fresh mapping faults (each fault maps a run of pages)
    assert hot <= cold // 8, (cold, hot)


@linux
def test_warm_stays_within_its_memory_budget(tmp_path):
    path = tmp_path / "rows.u8"
    np.zeros(1 << 20, np.uint8).tofile(path)
    assert warm([np.memmap(path, np.uint8, "r")], budget=1e-12) is None
    assert warm([np.zeros(1 << 20, np.uint8)]) is None  # in memory already: nothing to map


def test_mapped_keeps_each_memory_mapped_array_once(tmp_path):
    path = tmp_path / "a.u8"
    np.zeros(4096, np.uint8).tofile(path)
    a = np.memmap(path, np.uint8, "r")
    assert mapped([a, np.zeros(3), a, np.memmap(path, np.uint8, "r")[:0]]) == [a]


def test_accelerator_warms_what_queries_read_once_per_change(tmp_path, monkeypatch):
    import index.faiss as faiss_mod
    from tests.test_faiss import DIM, clustered, fill
    from egorag.schema import EncoderFingerprint

    store = LanceSceneStore(tmp_path / "db", {"text": EncoderFingerprint("text", "test-hash", "h", DIM)})
    fill(store, clustered(400))
    FaissAccelerator(store, FaissOptions(sketch_threshold=100)).sync()
    handed = []
    monkeypatch.setattr(faiss_mod, "warm", lambda arrays: handed.append(list(arrays)) or None)
    reopened = FaissAccelerator(LanceSceneStore(store.uri), FaissOptions(sketch_threshold=100))
    reopened.sync()
    [arrays] = handed  # once, on open
    assert reopened.sketch is not None and arrays[0] is reopened.sketch.codes.data  # most read first
    assert any(a is reopened.rows["text"].data for a in arrays)
    assert any(a is reopened.texts.postings[0].rows for a in arrays)
    assert len(mapped(arrays)) == sum(a.nbytes > 0 for a in arrays)  # all file mappings
    reopened._synced = None
    reopened.sync()  # nothing changed: no second warm-up
    assert len(handed) == 1
    off = FaissAccelerator(LanceSceneStore(store.uri), FaissOptions(sketch_threshold=100, warm=False))
    off.sync()
    assert len(handed) == 1 and off.warming is None
