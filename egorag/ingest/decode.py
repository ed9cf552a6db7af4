"""Media decoding with PyAV: probing with strict bad-input errors, one streaming decode pass over the
video frames that feeds any number of consumers, and audio resampled to mono float32."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np

from egorag.errors import MediaError
from egorag.schema import VideoInfo

logger = logging.getLogger("egorag")

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv", ".f4v",
     ".wmv", ".asf", ".3gp", ".3g2", ".ogv", ".vob", ".mxf", ".dv"}
)

#: A decoded duration shorter than this fraction of the declared one means the file is truncated.
TRUNCATION_TOLERANCE = 0.9
#: Frames further apart than this are said (a timestamp jump, or a still picture held that long).
GAP_WARN_S = 60.0


class FrameConsumer(Protocol):
    """Receives every decoded frame (in presentation order) of one decode pass."""

    def consume(self, index: int, time: float, frame) -> None: ...  # frame: av.VideoFrame


def content_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """blake2b-128 of the file's bytes, hex. Identifies a video's content independent of its path."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _open(path: str | Path):
    import av

    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise MediaError(str(path), "no such file") from None
    except OSError as exc:  # a symlink loop, a name too long, no permission on a folder
        raise MediaError(str(path), f"cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise MediaError(str(path), "is a directory, not a video file")
    if not stat.S_ISREG(info.st_mode):
        raise MediaError(str(path), f"is not a regular file (a {_file_kind(info.st_mode)}); index the video file itself")
    if info.st_size == 0:
        raise MediaError(str(path), "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise MediaError(str(path), "cannot be read (permission denied)")
    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise MediaError(str(path), f"not a readable media file ({_reason(exc)})") from None


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


def check_name(path: Path) -> None:
    """Store paths are UTF-8 text: a file name that is not (raw bytes from another system) is
    refused before any work, with the name shown as readable as it can be."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise MediaError(shown, "the file name is not valid UTF-8; rename the file") from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def probe(path: str | Path) -> VideoInfo:
    """Read a file's container header. Raises :class:`MediaError` for anything unusable."""
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(str(path), "has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        duration = _declared_duration(container, stream)
        if duration <= 0:
            raise MediaError(str(path), "video stream has no duration (empty or corrupt)")
        return VideoInfo(
            path=str(path),
            duration=duration,
            fps=fps,
            width=int(stream.codec_context.width or 0),
            height=int(stream.codec_context.height or 0),
            has_audio=bool(container.streams.audio),
            size_bytes=os.path.getsize(path),
        )


def _declared_duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    if stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    return 0.0


def decode_frames(path: str | Path, info: VideoInfo, consumers: Sequence[FrameConsumer]) -> float:
    """Decode every video frame once and hand it to each consumer. Returns the decoded duration.

    Raises :class:`MediaError` when decoding fails or stops well short of the declared duration
    (a truncated file), so a broken video never becomes a silently shortened index entry.
    """
    import av

    last_time, n = 0.0, 0
    gap = (0.0, 0.0)  # the longest stretch without frames
    frame_step = 1.0 / info.fps
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = stream.time_base or Fraction(1, 1)
        start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
        try:
            for frame in container.decode(stream):
                t = float(frame.pts * time_base) - start if frame.pts is not None else n * frame_step
                for consumer in consumers:
                    consumer.consume(n, t, frame)
                if t - last_time > gap[1] - gap[0]:
                    gap = (last_time, t)
                last_time, n = t, n + 1
        except av.FFmpegError as exc:
            raise MediaError(str(path), f"corrupt video stream near {last_time:.2f}s ({_reason(exc)})") from None
    if n == 0:
        raise MediaError(str(path), "no decodable video frames (corrupt or truncated)")
    if gap[1] - gap[0] > GAP_WARN_S:
        logger.warning("%s: no frames from %.1fs to %.1fs (%.0fs): a jump in its timestamps or a long still picture; "
                       "the scenes there hold only what was heard", path, gap[0], gap[1], gap[1] - gap[0])
    decoded = last_time + frame_step
    if decoded < TRUNCATION_TOLERANCE * info.duration - frame_step:
        raise MediaError(
            str(path),
            f"truncated: decoded {decoded:.2f}s of the {info.duration:.2f}s the container declares",
        )
    return decoded


def _audio_chunks(path: str | Path, sample_rate: int) -> Iterator[np.ndarray]:
    """The first audio track, mono float32 at ``sample_rate``, as it is decoded (nothing if
    there is none)."""
    import av

    with _open(path) as container:
        if not container.streams.audio:
            return
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1)
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1)
        except av.FFmpegError as exc:
            raise MediaError(str(path), f"corrupt audio stream ({_reason(exc)})") from None


def decode_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio track to mono float32 at ``sample_rate``; empty if there is none."""
    chunks = list(_audio_chunks(path, sample_rate))
    return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)


def decode_audio_windows(path: str | Path, sample_rate: int, window_s: float, overlap_s: float) -> Iterator[tuple[float, np.ndarray]]:
    """The first audio track (as :func:`decode_audio`) in windows of ``window_s + overlap_s``
    seconds starting every ``window_s`` seconds, the last one shorter: ``(start time, samples)``,
    decoded as they are consumed, so that memory holds one window whatever the video's length.
    One window (from 0) for a track no longer than ``window_s + overlap_s``; none without audio."""
    step, span = round(window_s * sample_rate), round((window_s + overlap_s) * sample_rate)
    if step <= 0 or span < step:
        raise ValueError(f"audio windows need window_s > 0 and overlap_s >= 0, not {window_s}, {overlap_s}")
    chunks: list[np.ndarray] = []
    held = start = 0  # samples held; the held samples' first sample number
    fresh = False  # held samples not yet in a yielded window
    for chunk in _audio_chunks(path, sample_rate):
        chunks.append(chunk)
        held += len(chunk)
        fresh = True
        while held >= span:
            buffer = np.concatenate(chunks)
            yield start / sample_rate, buffer[:span]
            chunks, held, start = [buffer[step:].copy()], held - step, start + step  # a copy: the window is freed
            del buffer
            fresh = held > span - step  # beyond the overlap just yielded
    if fresh and held:
        yield start / sample_rate, np.concatenate(chunks)


def _walk(folder: Path) -> Iterator[Path]:
    """Every regular file under ``folder``; folders are followed once each (a symlink loop ends)
    and an unreadable one is skipped with a warning."""
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True, onerror=lambda e: logger.warning("%s: skipped (%s)", e.filename, e.strerror)):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in files:
            f = Path(root) / name
            if f.is_file():
                yield f


def find_videos(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of video files.

    A path given explicitly is kept whatever its extension, so that a bad file given by name gets
    a clear error rather than being ignored; inside folders only known video extensions count.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(f for f in _walk(p) if f.suffix.lower() in VIDEO_EXTENSIONS)
            if not inside:
                logger.warning("%s: no video files in this folder (looked for %s)", p, " ".join(sorted(VIDEO_EXTENSIONS)))
            found += inside
        else:
            found.append(p)
    return found
