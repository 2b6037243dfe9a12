"""Image decoding and resizing to a model's input: any size and mode in, uint8 (H, W, C) out.

Training imports ``to_array`` too, so a model sees at serving exactly what it saw in training.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

# Content types that name one format; a body of another format under one of them is refused (415).
_FORMAT_OF_TYPE = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/x-ms-bmp": "BMP",
    "image/webp": "WEBP",
    "image/tiff": "TIFF",
}
# Content types that say "some image" without naming one: the bytes decide.
GENERIC_TYPES = frozenset({"", "application/octet-stream", "image/*", "binary/octet-stream"})
IMAGE_TYPES = frozenset(_FORMAT_OF_TYPE) | {"image/*"}


@dataclass(frozen=True)
class ImageSpec:
    """What an image model takes: height x width x channels (1 grey, 3 RGB) of uint8."""

    height: int
    width: int
    channels: int

    @classmethod
    def from_preprocessing(cls, pre: dict[str, Any]) -> ImageSpec:
        """The input model.json's ``preprocessing.image`` describes."""
        return cls(int(pre["height"]), int(pre["width"]), int(pre["channels"]))


def decode(data: bytes, *, max_pixels: int, content_type: str | None = None) -> Image.Image:
    """Decode an encoded image, refusing corrupt data, decompression bombs and mislabelled formats."""
    if not data:
        raise BadRequest("the image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError:
        raise PayloadTooLarge("image too large: past the decoder's decompression-bomb limit") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise BadRequest("cannot decode the image: not a supported image format or corrupt data") from None
    width, height = img.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    declared = (content_type or "").split(";")[0].strip().lower()
    expected = _FORMAT_OF_TYPE.get(declared)
    if expected is not None and img.format != expected:
        raise UnsupportedMediaType(
            f"the body was declared {declared} but holds a {img.format} image; "
            "send the matching content type (or application/octet-stream to let the bytes decide)"
        )
    try:
        img.load()
    except Exception:  # Pillow raises OSError, SyntaxError, struct.error... on corrupt data
        raise BadRequest(f"cannot decode the {img.format} image: the data is corrupt or truncated") from None
    return img


def to_array(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """EXIF-rotate, convert the mode, resize (bilinear): uint8 of shape (H, W, C)."""
    img = ImageOps.exif_transpose(img) or img
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float grey: scale to 8 bits rather than clip (convert("L") clips at 255).
        wide = np.asarray(img, dtype=np.float64)
        top = float(wide.max()) or 1.0
        img = Image.fromarray((wide * (255.0 / max(top, 255.0))).astype(np.uint8), mode="L")
    target = "L" if spec.channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)
    if img.size != (spec.width, spec.height):
        img = img.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).reshape(spec.height, spec.width, spec.channels)


def decode_to_array(
    data: bytes, spec: ImageSpec, *, max_pixels: int, content_type: str | None = None
) -> np.ndarray:
    """``decode`` then ``to_array``: what the service runs, off the event loop, for each image."""
    return to_array(decode(data, max_pixels=max_pixels, content_type=content_type), spec)
