"""Request payloads that cost the server real work, for the overload and hot-reload tests."""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image


@functools.cache
def big_png() -> bytes:
    """5000 x 5000 RGB stripes: under 1 MB to send, over half a second to decode and frame on one core
    (4000 x 4000 was enough before digits' framing box-reduced big pictures instead of resizing them)."""
    y, x = np.mgrid[0:5000, 0:5000]
    grey = ((x * 7 + y * 3) % 256).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.stack([grey, grey[::-1], grey.T], axis=-1), "RGB").save(out, "PNG")
    return out.getvalue()
