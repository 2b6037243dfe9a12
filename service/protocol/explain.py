"""`/predict?explain=1`: what the model saw, per input, beside its answer.

Preprocessing is where a confusing answer usually comes from (a digit drawn too thin, a word outside the
vocabulary), so the answer can carry the model's own input back: an image model's preprocessed pixels as
a PNG data URL, a text model's tokens with the unknown ones marked. Built from the feeds the batcher
ran, so it is exactly what the model saw. Each input kind explains its own inputs (``InputKind.explain``,
in service/kinds/); the picture helpers they share live here.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from service.runtime import Feeds

if TYPE_CHECKING:
    from service.repository.versions import ModelVersion


def explain(mv: ModelVersion, items: Sequence[Any], feeds: Feeds) -> list[dict[str, Any]] | None:
    """One dict per row from the model's input kind; None when the kind has nothing to show."""
    return mv.kind.explain(items, feeds)


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 (H, W, 1 or 3) as a data:image/png;base64 URL."""
    grey = pixels.shape[-1] == 1
    img = Image.fromarray(pixels[..., 0] if grey else pixels, mode="L" if grey else "RGB")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def spectrogram_rows(features: np.ndarray) -> list[dict[str, Any]]:
    """Per clip of (N, frames, bands) features, a spectrogram image: time left to right, low bands at the
    bottom, each clip scaled to its own range (for an audio kind's ``explain``)."""
    rows = []
    for feats in np.asarray(features, dtype=np.float32):
        lo, hi = float(feats.min()), float(feats.max())
        scaled = (feats - lo) / (hi - lo) if hi > lo else np.zeros_like(feats)
        picture = (scaled.T[::-1] * 255).round().astype(np.uint8)[..., None]  # (bands, frames, 1)
        rows.append({"input": {"shape": list(feats.shape), "spectrogram": png_data_url(picture)}})
    return rows
