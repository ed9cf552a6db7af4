"""Image files for image queries and zero-shot classification, refused early when they cannot be."""

from __future__ import annotations

from pathlib import Path

from egorag.errors import MediaError

#: An image query larger than this is refused before it is decoded (a 150 Mpx PNG decodes
#: to 450 MB; the visual encoders look at a few hundred pixels a side).
MAX_IMAGE_PIXELS = 40_000_000


def load_image(path):
    """An RGB PIL image from a path or a binary file object; :class:`MediaError` for a file that
    is missing, not an image, or over :data:`MAX_IMAGE_PIXELS` (checked from its header)."""
    from PIL import Image, UnidentifiedImageError

    name = str(path) if isinstance(path, (str, Path)) else "image"
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise MediaError(name, f"image of {im.width}x{im.height} pixels is over the limit of "
                                 f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels; scale it down")
            return im.convert("RGB")
    except FileNotFoundError:
        raise MediaError(name, "no such file") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise MediaError(name, f"not a readable image ({exc})") from None
