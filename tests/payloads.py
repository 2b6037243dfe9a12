"""Request payloads that cost the server real work, for the overload and hot-reload tests."""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image


@functools.cache
def big_png() -> bytes:
    """4000 x 4000 RGB stripes: 0.5 MB to send, about 0.6 s to decode on one core."""
    y, x = np.mgrid[0:4000, 0:4000]
    grey = ((x * 7 + y * 3) % 256).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.stack([grey, grey[::-1], grey.T], axis=-1), "RGB").save(out, "PNG")
    return out.getvalue()
