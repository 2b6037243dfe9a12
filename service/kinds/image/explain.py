"""`/predict?explain=1` for pictures: the model's own input back, as a PNG data URL.

Preprocessing is where a confusing answer usually comes from (a digit drawn too thin), so the answer can
carry what the model saw, built from the feeds the batcher ran. Audio's spectrograms use it too.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 (H, W, 1 or 3) as a data:image/png;base64 URL."""
    grey = pixels.shape[-1] == 1
    img = Image.fromarray(pixels[..., 0] if grey else pixels, mode="L" if grey else "RGB")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")
