"""Image decoding and framing to a model's input: any size and mode in, uint8 (H, W, C) out.

Training imports ``to_array`` too, so a model sees at serving exactly what it saw in training. How a
picture becomes the model's frame is the model's declared framing (``preprocessing.image.framing`` in
model.json): ``resize`` (the whole picture, bilinear), or an ink framing from ``framing.py`` (``mnist``:
MNIST's 20-px box centred by mass; ``fill``: Fashion-MNIST's item filling the frame).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from service.kinds.image.framing import INK_FRAMINGS

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
FRAMINGS = frozenset({"resize", *INK_FRAMINGS})


@dataclass(frozen=True)
class ImageSpec:
    """What an image model takes: height x width x channels (1 grey, 3 RGB) of uint8, and how a picture
    is framed into it (one of FRAMINGS; the ink framings are grey only)."""

    height: int
    width: int
    channels: int
    framing: str = "resize"

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise ValueError(f"unknown image framing {self.framing!r}; the framings are {sorted(FRAMINGS)}")
        if self.framing != "resize" and self.channels != 1:
            raise ValueError(f"the {self.framing!r} framing makes grey frames; channels must be 1")

    @classmethod
    def from_preprocessing(cls, pre: dict[str, Any]) -> ImageSpec:
        """The input model.json's ``preprocessing.image`` describes (no framing named: ``resize``)."""
        return cls(
            int(pre["height"]), int(pre["width"]), int(pre["channels"]), str(pre.get("framing", "resize"))
        )


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
    if img.mode not in _FRAMED_MODES:  # LAB (a TIFF can hold it): Pillow makes RGB of it, not grey
        try:
            readable = img.convert("RGBA" if img.mode.endswith(("A", "a")) else "RGB")
        except ValueError:
            raise UnsupportedMediaType(
                f"the {img.format} image's colour mode {img.mode} cannot be read; send grey, RGB(A), "
                "CMYK or palette pixels"
            ) from None
        return readable
    return img


# Colour modes Pillow converts to grey and to RGB directly (to_array's framings need one or the other).
_FRAMED_MODES = frozenset(
    {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "HSV", "F", "I"}
    | {"I;16", "I;16B", "I;16L", "I;16N"}
)


def to_array(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """EXIF-rotate, then frame as the spec says: uint8 of shape (H, W, C).

    An ink framing raises InvalidInput (422) on a blank picture."""
    img = ImageOps.exif_transpose(img) or img
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float grey: scale to 8 bits rather than clip (convert("L") clips at 255).
        wide = np.asarray(img, dtype=np.float64)
        top = float(wide.max()) or 1.0
        img = Image.fromarray((wide * (255.0 / max(top, 255.0))).astype(np.uint8), mode="L")
    if spec.framing in INK_FRAMINGS:
        return INK_FRAMINGS[spec.framing](img, spec.height, spec.width)[..., None]
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
