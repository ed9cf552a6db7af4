"""Times as people write them: seconds, ``mm:ss`` or ``hh:mm:ss``."""

from __future__ import annotations

import math


def parse_time(value: str | float) -> float:
    """Seconds from ``12.5``, ``mm:ss`` or ``hh:mm:ss`` (the form :func:`mmss` writes)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            parts = [float(p) for p in str(value).split(":")]
        except ValueError:
            raise ValueError(f"not a time: {value!r} (use seconds, mm:ss or hh:mm:ss)") from None
        seconds = 0.0
        for p in parts:
            seconds = seconds * 60 + p
    if not math.isfinite(seconds):
        raise ValueError(f"not a time: {value!r} (a time must be a finite number of seconds)")
    return seconds


def mmss(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"
