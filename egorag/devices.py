"""Device resolution: ``auto`` resolves once and is logged; an explicit GPU that is absent raises."""

from __future__ import annotations

import functools
import logging
import os

from egorag.errors import DeviceError

logger = logging.getLogger("egorag")

VALID_DEVICES = ("auto", "cpu", "cuda")


@functools.lru_cache(maxsize=None)
def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_cores() -> int:
    """The cores this process may run on (its affinity, which containers and ``taskset`` narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_device(device: str = "auto") -> str:
    """Return a concrete torch device string for ``device``.

    ``"auto"`` picks ``cuda`` when available, else ``cpu``. ``"cuda"`` or ``"cuda:N"`` without a GPU
    raises :class:`DeviceError` rather than silently running on the CPU.
    """
    if device == "auto":
        resolved = "cuda" if _cuda_available() else "cpu"
        _log_auto_once(resolved)
        return resolved
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not _cuda_available():
            raise DeviceError(
                f"device {device!r} was requested but CUDA is not available on this machine; "
                "use device='cpu' or 'auto'"
            )
        return device
    raise DeviceError(f"unknown device {device!r}; expected one of {VALID_DEVICES} or 'cuda:N'")


@functools.lru_cache(maxsize=None)
def _log_auto_once(resolved: str) -> None:
    logger.info("device='auto' resolved to %r", resolved)
