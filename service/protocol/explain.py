"""`/predict?explain=1`: what the model saw, per input, beside its answer.

Preprocessing is where a confusing answer usually comes from (a digit drawn too thin, a word outside the
vocabulary), so the answer can carry the model's own input back: an image model's preprocessed pixels as
a PNG data URL, a text model's tokens with the unknown ones marked. Built from the feeds the batcher
ran, so it is exactly what the model saw. One explainer per input kind, looked up by name.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from service.repository import ModelVersion
from service.runtime import Feeds

# (model version, the request's raw items, the feeds they became) -> one dict per row
Explainer = Callable[[ModelVersion, Sequence[Any], Feeds], list[dict[str, Any]]]
_EXPLAINERS: dict[str, Explainer] = {}


def explainer(kind: str) -> Callable[[Explainer], Explainer]:
    def register(fn: Explainer) -> Explainer:
        _EXPLAINERS[kind] = fn
        return fn

    return register


def explain(mv: ModelVersion, items: Sequence[Any], feeds: Feeds) -> list[dict[str, Any]] | None:
    """One dict per row for the model's input kind; None when the kind has no explainer."""
    fn = _EXPLAINERS.get(mv.input_kind)
    return fn(mv, items, feeds) if fn is not None else None


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 (H, W, 1 or 3) as a data:image/png;base64 URL."""
    grey = pixels.shape[-1] == 1
    img = Image.fromarray(pixels[..., 0] if grey else pixels, mode="L" if grey else "RGB")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


@explainer("image")
def _image(mv: ModelVersion, items: Sequence[Any], feeds: Feeds) -> list[dict[str, Any]]:
    pixels = feeds[mv.inputs[0].name]  # (N, H, W, C) uint8, as the model took it
    return [{"input": {"shape": list(row.shape), "image": png_data_url(row)}} for row in pixels]


@explainer("text")
def _text(mv: ModelVersion, items: Sequence[Any], feeds: Feeds) -> list[dict[str, Any]]:
    """The tokens read (cut where the model's maximum length cut them), whether the vocabulary knew each
    (directly or by its second chance), and the exact ids the model ran on."""
    tok = mv.tokenizer
    assert tok is not None
    rows = []
    for text, row in zip(items, feeds[mv.inputs[0].name].tolist(), strict=True):
        words, known, used = [], [], 0
        for token in tok.tokens(text):
            if used >= tok.max_length:
                break
            ids = tok.encode(token).tolist()  # one token may become several ids (a split compound)
            words.append(token)
            known.append(tok.unk_id not in ids)
            used += len(ids)
        while row and row[-1] == tok.pad_id:  # right padding from the batch, not the text
            row.pop()
        rows.append({"input": {"tokens": words, "known": known, "ids": row, "unknown_id": tok.unk_id}})
    return rows


@explainer("audio")
def _audio(mv: ModelVersion, items: Sequence[Any], feeds: Feeds) -> list[dict[str, Any]]:
    """The features the model heard, (frames, bands) per clip, as a spectrogram image: time left to
    right, low bands at the bottom, each clip scaled to its own range."""
    rows = []
    for feats in np.asarray(feeds[mv.inputs[0].name], dtype=np.float32):
        lo, hi = float(feats.min()), float(feats.max())
        scaled = (feats - lo) / (hi - lo) if hi > lo else np.zeros_like(feats)
        picture = (scaled.T[::-1] * 255).round().astype(np.uint8)[..., None]  # (bands, frames, 1)
        rows.append({"input": {"shape": list(feats.shape), "spectrogram": png_data_url(picture)}})
    return rows
