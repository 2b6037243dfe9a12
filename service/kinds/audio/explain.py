"""`/predict?explain=1` for audio: each clip's features as a spectrogram picture."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.kinds.image.explain import png_data_url


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
