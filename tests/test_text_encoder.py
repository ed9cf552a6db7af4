"""The real text encoders: ONNX Runtime queries equal PyTorch's (float32) or keep to them (int8
weights, the default), exports are cached and checked, a search process needs no torch, and an
explicit runtime that cannot run says why. MiniLM carries most tests (it exports in seconds);
the default, all-mpnet-base-v2, is checked end to end once."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from egorag.encoders import onnx_text
from egorag.encoders.sentence import SentenceEncoder
from egorag.errors import ConfigError, ModelLoadError
from egorag.weights import resolve_model

pytestmark = pytest.mark.slow

QUERIES = ["where did I leave my keys", "a volcano erupts with lava", "Bread dough rises in a warm oven."]
MINILM = "all-MiniLM-L6-v2"
DOCS = ["Keys are often left on the kitchen table by the door.", "Magma rises and the mountain erupts.",
        "Knead the dough and bake it until golden.", "The train to Lisbon leaves from platform seven."]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(onnx_text.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def test_onnx_queries_match_pytorch_and_the_export_is_cached(cache):
    torch_enc = SentenceEncoder(MINILM, query_runtime="torch")
    onnx_enc = SentenceEncoder(MINILM, query_precision="float32")  # auto: exports once, checked against PyTorch
    assert torch_enc.query_runtime == "torch" and onnx_enc.query_runtime == "onnx"
    [export] = cache.glob("*.onnx")
    np.testing.assert_allclose(onnx_enc.encode_queries(QUERIES), torch_enc.encode_queries(QUERIES), atol=1e-5)
    np.testing.assert_allclose(onnx_enc.encode_queries(QUERIES[:1]), torch_enc.encode_documents(QUERIES[:1]), atol=1e-5)
    # a batch of mixed lengths (two share one) runs unpadded, length group by length group: the
    # same vectors as one at a time, and nothing padded (tokenizer.json may pad to a fixed length)
    mixed = QUERIES + ["keys", "lava", "the whole history of bread baking from ancient Egypt to sourdough in modern kitchens"]
    np.testing.assert_allclose(onnx_enc.encode_queries(mixed), np.concatenate([onnx_enc.encode_queries([q]) for q in mixed]), atol=1e-6)
    np.testing.assert_allclose(onnx_enc.encode_queries(mixed), torch_enc.encode_queries(mixed), atol=1e-5)
    assert onnx_enc._queries.tokenizer.padding is None
    # documents still go through PyTorch, loaded on first use
    np.testing.assert_allclose(onnx_enc.encode_documents(QUERIES), torch_enc.encode_documents(QUERIES), atol=1e-6)
    mtime = export.stat().st_mtime_ns
    SentenceEncoder(MINILM, query_precision="float32")
    assert export.stat().st_mtime_ns == mtime  # reused, not exported again


def cosines(a, b):
    return (a * b).sum(axis=1)  # both L2-normalised


@pytest.mark.parametrize("model", [MINILM, "all-mpnet-base-v2"])
def test_int8_query_weights_keep_the_vectors_and_the_ranking(cache, model):
    import onnx

    torch_enc = SentenceEncoder(model, query_runtime="torch")
    enc = SentenceEncoder(model)  # int8 by default
    assert enc.query_runtime == "onnx" and enc._queries.precision == "int8"
    [export] = cache.glob("*-int8.onnx")
    assert any(n.op_type == "MatMulNBits" for n in onnx.load(str(export), load_external_data=False).graph.node)
    got, want = enc.encode_queries(QUERIES), torch_enc.encode_queries(QUERIES)
    assert cosines(got, want).min() >= onnx_text.MIN_INT8_COSINE
    docs = torch_enc.encode_documents(DOCS)
    assert ((got @ docs.T).argmax(axis=1) == (want @ docs.T).argmax(axis=1)).all()
    assert ((got @ docs.T).argmax(axis=1) == [0, 1, 2]).all()


def test_int8_weights_that_stray_are_not_used(cache, monkeypatch, caplog):
    monkeypatch.setattr(onnx_text, "MIN_INT8_COSINE", 1.01)  # no quantised graph can pass
    with caplog.at_level(logging.WARNING, logger="egorag"):
        enc = SentenceEncoder(MINILM)
    assert enc.query_runtime == "onnx" and enc._queries.precision == "float32" and "stray from PyTorch" in caplog.text
    np.testing.assert_allclose(enc.encode_queries(QUERIES), SentenceEncoder(MINILM, query_runtime="torch").encode_queries(QUERIES), atol=1e-5)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="egorag"):
        assert SentenceEncoder(MINILM)._queries.precision == "float32"  # cached as it was: not tried again
    assert not caplog.text


def test_search_process_with_a_cached_export_never_imports_torch(cache):
    SentenceEncoder(MINILM, query_precision="float32")  # makes the export
    code = (
        "import sys, json; from egorag.encoders.sentence import SentenceEncoder; "
        f"e = SentenceEncoder({MINILM!r}, query_precision='float32'); v = e.encode_queries(['where did I leave my keys']); "
        "print(json.dumps({'torch': 'torch' in sys.modules, 'runtime': e.query_runtime, 'v': v[0].tolist()}))"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    want = SentenceEncoder(MINILM, query_runtime="torch").encode_queries(QUERIES[:1])[0].tolist()
    assert out == {"torch": False, "runtime": "onnx", "v": pytest.approx(want, abs=1e-5)}


def test_an_export_that_disagrees_with_pytorch_is_refused(cache, monkeypatch, caplog):
    monkeypatch.setattr(onnx_text, "MAX_ABS_ERROR", -1.0)  # no export can pass
    with caplog.at_level(logging.WARNING, logger="egorag"):
        enc = SentenceEncoder(MINILM)
    assert enc.query_runtime == "torch" and not list(cache.glob("*.onnx"))
    assert "differs from PyTorch" in caplog.text
    with pytest.raises(ModelLoadError, match="could not be exported"):
        SentenceEncoder(MINILM, query_runtime="onnx")


def test_unsupported_layout_stays_on_pytorch_and_explicit_onnx_says_why(cache, tmp_path):
    source = resolve_model(MINILM).location
    model = tmp_path / "cls-pooling-minilm"
    for f in sorted(p for p in Path(source).rglob("*") if p.is_file()):
        target = model / f.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(f)
    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.unlink()
    pooling.write_text(json.dumps(dict(config, pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)))
    assert SentenceEncoder(str(model)).query_runtime == "torch"
    with pytest.raises(ModelLoadError, match="mean Pooling"):
        SentenceEncoder(str(model), query_runtime="onnx")
    with pytest.raises(ConfigError, match="query_runtime"):
        SentenceEncoder(MINILM, query_runtime="tensorrt")
    with pytest.raises(ConfigError, match="query_precision"):
        SentenceEncoder(MINILM, query_precision="int4")
