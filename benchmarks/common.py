"""Shared by the benchmark scripts: run metadata (git sha, machine, versions) and JSON output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PACKAGES = ("egorag", "torch", "faiss-cpu", "lancedb", "numpy", "sentence-transformers", "faster-whisper", "av")


def run_metadata() -> dict:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
        # the code is dirty when a tracked file outside results/ changed: a run's own results are not
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude)results"],
                                capture_output=True, text=True, cwd=HERE).stdout
        dirty = bool(status.strip())
    except OSError:
        sha, dirty = "unknown", False
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "git_sha": sha + ("-dirty" if dirty else ""),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "versions": versions,
    }


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"meta": run_metadata(), **payload}, indent=2) + "\n")
    print(f"saved {path}")
    return path
