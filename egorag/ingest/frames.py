"""Frame sampling for the visual modality, as a consumer of the shared decode pass.

Frames are converted by PyAV straight to the model's input size (shortest side resized, then
centre-cropped, like open_clip's preprocessing) and embedded in batches as they arrive, so memory
stays flat however long the video: only vectors and small JPEG thumbnails are kept.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from egorag.config import VisualConfig
from egorag.encoders.base import l2_normalize
from egorag.ingest.keyframes import bipartite_merge, kmeans_keyframes
from egorag.schema import Keyframes, SceneSpan


def frame_to_square(frame, size: int) -> np.ndarray:
    """An ``av.VideoFrame`` as uint8 RGB (size, size, 3): bicubic resize of the shortest side to
    ``size``, then a centre crop (torchvision's Resize + CenterCrop arithmetic)."""
    w, h = frame.width, frame.height
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    rgb = frame.to_ndarray(width=new_w, height=new_h, format="rgb24", interpolation="BICUBIC")
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return rgb[top : top + size, left : left + size]


def square(image: np.ndarray, size: int) -> np.ndarray:
    """A uint8 RGB array resized (bicubic, shortest side to ``size``) and centre-cropped to
    ``size`` x ``size``: :func:`frame_to_square` for an image already decoded."""
    from PIL import Image

    im = Image.fromarray(image)
    scale = size / min(im.width, im.height)
    im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.BICUBIC)
    left, top = (im.width - size) // 2, (im.height - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)))


def jpeg_thumbnail(image: np.ndarray, px: int, quality: int = 80) -> bytes:
    from PIL import Image

    im = Image.fromarray(image)
    im.thumbnail((px, px))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def samples_in(times: np.ndarray, span: SceneSpan, cap: int) -> np.ndarray:
    """Indices of the samples inside ``span`` (the nearest one for a scene shorter than the
    sampling period), thinned evenly to at most ``cap``."""
    idx = np.flatnonzero((times >= span.start - 1e-6) & (times < span.end - 1e-6))
    if idx.size == 0 and times.size:
        idx = np.array([int(np.argmin(np.abs(times - 0.5 * (span.start + span.end))))])
    if idx.size > cap:
        idx = idx[np.linspace(0, idx.size - 1, cap).round().astype(int)]
    return idx


class FrameSampler:
    """Samples frames at ``config.fps`` (and at least once per ``min_scene_s``), embeds them in
    batches, and finally reduces each scene's frames to keyframes."""

    def __init__(self, encoder, config: VisualConfig, min_scene_s: float = 1.0):
        self.encoder = encoder
        self.config = config
        self.period = 1.0 / max(config.fps, 1.0 / max(min_scene_s, 1e-3))
        self._next = 0.0
        self._pending: list[np.ndarray] = []
        self._pending_times: list[float] = []
        self._vectors: list[np.ndarray] = []
        self._times: list[float] = []
        self._thumbs: list[bytes] = []
        self._crops: list[bytes] = []  # the model-sized frames, kept (JPEG) only for a clip encoder

    def consume(self, index: int, time: float, frame) -> None:
        if time + 1e-6 < self._next:
            return
        self._next = time + self.period
        crop = frame_to_square(frame, self.encoder.image_size)
        self._pending.append(crop)
        self._pending_times.append(time)
        self._thumbs.append(jpeg_thumbnail(crop, self.config.thumbnail_px))
        if self.encoder.clip_frames:
            self._crops.append(jpeg_thumbnail(crop, self.encoder.image_size, quality=90))
        if len(self._pending) >= self.config.batch_size:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            frames = np.stack(self._pending)
            # a clip encoder embeds a scene's picked frames together; its frames are told apart by
            # their pixels (16 x 16 grey, normalised), not by a model call each
            vectors = self.encoder.encode_frames(frames) if not self.encoder.clip_frames else pixel_features(frames)
            self._vectors.append(vectors)
            self._times += self._pending_times
            self._pending, self._pending_times = [], []

    def keyframes(self, spans: Sequence[SceneSpan]) -> list[Keyframes | None]:
        self._flush()
        if not self._times:
            return [None] * len(spans)
        vectors = np.concatenate(self._vectors)
        times = np.asarray(self._times)
        out: list[Keyframes | None] = []
        for span in spans:
            idx = samples_in(times, span, self.config.max_frames)
            out.append(self._reduce(vectors[idx], times[idx], idx))
        return out

    def _reduce(self, vectors: np.ndarray, times: np.ndarray, idx: np.ndarray) -> Keyframes:
        if self.encoder.clip_frames:
            return self._clip(vectors, times, idx)
        k = self.config.max_keyframes
        if self.config.reducer == "bipartite":
            merged, merged_times = bipartite_merge(vectors, times, k)
            nearest = [int(idx[np.argmin(np.abs(times - t))]) for t in merged_times]
            return Keyframes(merged, tuple(float(t) for t in merged_times), tuple(self._thumbs[i] for i in nearest))
        picks = kmeans_keyframes(vectors, k)
        return Keyframes(
            vectors[picks], tuple(float(t) for t in times[picks]), tuple(self._thumbs[int(idx[p])] for p in picks)
        )

    def _clip(self, features: np.ndarray, times: np.ndarray, idx: np.ndarray) -> Keyframes:
        """A clip encoder's scene: its ``clip_frames`` frames picked by k-means over their pixels,
        in time order, embedded as one video; that vector is the scene's one keyframe, at the
        middle pick's time."""
        from PIL import Image

        picks = sorted(int(p) for p in kmeans_keyframes(features, self.encoder.clip_frames))
        frames = np.stack([np.asarray(Image.open(io.BytesIO(self._crops[int(idx[p])])).convert("RGB")) for p in picks])
        pooled = self.encoder.encode_clip(frames)
        middle = picks[len(picks) // 2]
        return Keyframes(pooled[None], (float(times[middle]),), (self._thumbs[int(idx[middle])],), pooled)


def pixel_features(frames: np.ndarray, side: int = 16) -> np.ndarray:
    """Each uint8 frame (n, S, S, 3) as a small grey image, flattened, centred and L2-normalised:
    enough to tell a scene's frames apart for k-means."""
    from PIL import Image

    grey = np.stack([np.asarray(Image.fromarray(f).convert("L").resize((side, side), Image.BILINEAR), np.float32).ravel()
                     for f in frames])
    grey -= grey.mean(axis=1, keepdims=True)
    return l2_normalize(grey)


class PeriodicFrames(ABC):
    """Keeps the decoded frame as a JPEG once per ``period`` seconds, at the size ``_size``
    picks; the two consumers below differ only in size, filter and quality."""

    interpolation = "BICUBIC"

    def __init__(self, period: float, quality: int):
        self.period, self.quality = period, quality
        self._next = 0.0
        self._times: list[float] = []
        self._jpegs: list[bytes] = []

    @abstractmethod
    def _size(self, frame) -> tuple[int, int]:
        """The (width, height) a frame is kept at."""

    def consume(self, index: int, time: float, frame) -> None:
        if time + 1e-6 < self._next:
            return
        self._next = time + self.period
        w, h = self._size(frame)
        rgb = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation=self.interpolation)
        self._times.append(time)
        self._jpegs.append(jpeg_thumbnail(rgb, max(w, h), quality=self.quality))


class CaptionFrames(PeriodicFrames):
    """Frames at the captioner's working size (shortest side ``size``), then each scene's up to
    ``per_scene`` of them as PIL images."""

    def __init__(self, size: int = 384, period: float = 1.0, per_scene: int = 4):
        super().__init__(period, quality=90)
        self.size, self.per_scene = size, per_scene

    def _size(self, frame) -> tuple[int, int]:
        scale = self.size / min(frame.width, frame.height)
        return max(2, int(frame.width * scale)), max(2, int(frame.height * scale))

    def frames_for(self, spans: Sequence[SceneSpan], keyframe_times: Sequence[Sequence[float] | None] = ()) -> list[list]:
        """Each scene's frames for the captioner: those nearest its keyframes (the k-means picks
        of the visual model, when it ran; ``keyframe_times`` per scene), else evenly spaced."""
        from PIL import Image

        times = np.asarray(self._times)
        out = []
        for i, span in enumerate(spans):
            picks = keyframe_times[i] if i < len(keyframe_times) else None
            if picks and times.size:
                nearest = [int(np.argmin(np.abs(times - t))) for t in picks]
                idx = sorted(dict.fromkeys(nearest))[: self.per_scene]
            else:
                idx = samples_in(times, span, self.per_scene)
            out.append([Image.open(io.BytesIO(self._jpegs[j])).convert("RGB") for j in idx])
        return out


class SceneThumbnails(PeriodicFrames):
    """Small JPEGs (longest side ``px``), then for each scene the one nearest its middle: every
    scene gets a picture, whatever modalities run."""

    interpolation = "AREA"

    def __init__(self, px: int = 320, period: float = 1.0, quality: int = 75):
        super().__init__(period, quality)
        self.px = px

    def _size(self, frame) -> tuple[int, int]:
        scale = min(1.0, self.px / max(frame.width, frame.height))
        return max(2, int(frame.width * scale)), max(2, int(frame.height * scale))

    def for_spans(self, spans: Sequence[SceneSpan]) -> list[bytes | None]:
        times = np.asarray(self._times)
        if times.size == 0:
            return [None] * len(spans)
        middles = np.array([0.5 * (s.start + s.end) for s in spans])
        nearest = np.abs(times[None, :] - middles[:, None]).argmin(axis=1)
        return [self._jpegs[int(i)] for i in nearest]
