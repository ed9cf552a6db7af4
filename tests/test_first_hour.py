"""What a new user meets in the first hour: fast failures (files and weights probed before
anything heavy loads), filters naming videos that do not exist, messages in the surface's own
words, a quiet install."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
from conftest import REPO
from writer_proc import engine

from egorag.errors import QueryError
from egorag.filters import SceneFilter

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}


def cli(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float, bool]:
    """Run the CLI in a fresh process; also says whether torch got imported."""
    code = ("import runpy, sys; sys.argv = ['egorag', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('egorag.cli', run_name='__main__')\n"
            "finally:\n    print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=OFFLINE, timeout=120)
    return out, time.perf_counter() - t0, "NO-TORCH" not in out.stderr


def test_status_classify_and_a_bad_file_fail_fast_without_the_ml_stack(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    (tmp_path / "notes.mp4").write_text("not a video\n")
    out, seconds, torch = cli("status", cwd=tmp_path)
    assert out.returncode == 0 and not torch
    assert re.search(r"^  visual +off ", out.stdout, re.M) and re.search(r"^  text +on ", out.stdout, re.M)
    assert re.search(r"^  audio_events off ", out.stdout, re.M)  # the widest name sets the column
    visual = next(line for line in out.stdout.splitlines() if line.startswith("  visual"))
    assert "to enable: set [visual] pretrained" in visual and "Tried" not in visual  # one short line: the fix
    out, seconds, torch = cli("status", "-v", cwd=tmp_path)
    assert "Tried: local path" in out.stdout  # -v: the loader's full reason
    out, seconds, torch = cli("classify", "a.jpg", "--labels", "a dog,a cat", cwd=tmp_path)
    assert out.returncode == 1 and "not in the local Hugging Face cache" in out.stderr and not torch
    out, seconds, torch = cli("classify", "missing.jpg", "--labels", "a dog,a cat", cwd=tmp_path)
    assert out.returncode == 1 and "missing.jpg: no such file" in out.stderr and not torch
    out, seconds, torch = cli("index", "notes.mp4", "--skip-bad", "--db", "db", "--quiet", cwd=tmp_path)
    assert out.returncode == 0 and "skipped" in out.stderr and "notes.mp4" in out.stderr and not torch
    assert not (tmp_path / "db").exists()


def test_a_filter_on_an_unknown_video_says_so_and_suggests(tmp_path, library):
    e = engine(str(tmp_path / "db"))
    e.index([library / "v3.mp4", library / "v4.mp4"])
    ids = sorted(v.video_id for v in e.videos())
    with pytest.raises(QueryError, match=r"no indexed video has the id 'nope'.*holds 2 video"):
        e.search("volcano", where=SceneFilter(video_ids=("nope",)))
    with pytest.raises(QueryError, match=rf"did you mean {ids[0]}"):
        e.search("volcano", where=SceneFilter(video_ids=(ids[0][:5],)))  # a prefix of an id
    v3 = next(v.video_id for v in e.videos() if v.path.endswith("v3.mp4"))
    with pytest.raises(QueryError, match=rf"did you mean {v3}"):
        e.search_many(["volcano"], where=SceneFilter(video_ids=("v3.mp4",)))  # a file name
    assert e.search("volcano", where=SceneFilter(video_ids=(v3,))).hits


def test_the_server_says_so_too(tmp_path, library):
    import json
    import urllib.parse

    from test_server import request, start

    e = engine(str(tmp_path / "db"))
    e.index([library / "v3.mp4"])
    server = start(engine(str(tmp_path / "db")))
    try:
        status, got = request(server, "/search?" + urllib.parse.urlencode({"q": "volcano", "video": "nope"}))
        assert status == 400 and "no indexed video has the id 'nope'" in got["error"]
        assert "--" not in json.dumps(got)
    finally:
        server.shutdown()
        server.server_close()


def test_the_license_is_an_spdx_string():
    """setuptools warns on every install that a license table is deprecated."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])
