"""From raw client inputs (encoded images, strings) to a model's feeds, and from scores to labels.

Shared by /predict and the V2 protocol's BYTES inputs. Everything here validates before anything is
queued, so one request's bad input never reaches another's batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.config import Settings
from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from service.preprocess.image import decode_to_array
from service.preprocess.text import pad_batch
from service.repository import ModelVersion
from service.runtime import Feeds

# Tokenising this many characters or more moves to a thread, off the event loop.
_TEXT_INLINE_CHARS = 8192


@dataclass
class ImageInput:
    data: bytes
    content_type: str | None = None


def check_count(n: int, what: str, settings: Settings) -> None:
    if n == 0:
        raise BadRequest(f"the request holds no {what}")
    if n > settings.max_items_per_request:
        raise PayloadTooLarge(f"the request holds {n} {what}; the limit is {settings.max_items_per_request}")


def require_kind(mv: ModelVersion, kind: str) -> None:
    if mv.input_kind == kind:
        return
    if mv.input_kind == "tensor":
        raise UnsupportedMediaType(
            f"model {mv.name!r} takes tensors, not {kind}s: POST /v2/models/{mv.name}/infer"
        )
    raise UnsupportedMediaType(f"model {mv.name!r} takes {mv.input_kind}s; this request sent {kind}s")


async def image_feeds(
    mv: ModelVersion, images: Sequence[ImageInput], settings: Settings, pool: Executor
) -> Feeds:
    """Decode and resize in the thread pool: {input: uint8 (N, H, W, C)}."""
    require_kind(mv, "image")
    check_count(len(images), "images", settings)
    spec, limit = mv.image_spec, settings.max_image_pixels
    assert spec is not None

    def decode_all() -> np.ndarray:
        arrays = []
        for i, image in enumerate(images):
            try:
                arrays.append(
                    decode_to_array(image.data, spec, max_pixels=limit, content_type=image.content_type)
                )
            except (BadRequest, PayloadTooLarge, UnsupportedMediaType) as e:
                if len(images) == 1:
                    raise
                raise type(e)(f"image {i}: {e.message}") from None  # name the culprit among many
        return np.stack(arrays)

    pixels = await asyncio.get_running_loop().run_in_executor(pool, decode_all)
    return {mv.inputs[0].name: pixels}


async def text_feeds(mv: ModelVersion, texts: Sequence[Any], settings: Settings, pool: Executor) -> Feeds:
    """Tokenise and right-pad: {input: int64 (N, T)}."""
    require_kind(mv, "text")
    check_count(len(texts), "texts", settings)
    tok = mv.tokenizer
    assert tok is not None

    def encode_all() -> np.ndarray:
        return pad_batch([tok.encode_checked(t, settings.max_text_chars) for t in texts], tok.pad_id)

    if sum(len(t) for t in texts if isinstance(t, str)) < _TEXT_INLINE_CHARS:
        ids = encode_all()
    else:
        ids = await asyncio.get_running_loop().run_in_executor(pool, encode_all)
    return {mv.inputs[0].name: ids}


def scores_of(mv: ModelVersion, outputs: Feeds) -> np.ndarray:
    """(N, K) scores: the model's probabilities output (else its first output)."""
    return outputs[mv.meta.scores_output or mv.model.output_names[0]]


def ranked(scores: np.ndarray, k: int) -> list[tuple[list[float], list[int]]]:
    """Per row of (N, K) scores: the row, and the indices of its k best, best first (ties by index)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(1, min(k, scores.shape[1]))]
    return list(zip(scores.tolist(), order.tolist(), strict=True))


def top_k(mv: ModelVersion, scores: np.ndarray, k: int) -> list[dict[str, Any]]:
    """One prediction per row: best label, index, score, and the k best."""
    labels = mv.meta.labels
    predictions = []
    for row, idx in ranked(scores, k):
        best = [{"label": labels[i] if i < len(labels) else str(i), "index": i, "score": row[i]} for i in idx]
        predictions.append({**best[0], "top_k": best})
    return predictions
