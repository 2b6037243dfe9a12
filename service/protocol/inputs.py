"""From a request's items to a model's feeds (through the model's input kind), and from scores to labels.

Shared by /predict and the V2 protocol's BYTES inputs. The kind validates before anything is queued, so
one request's bad input never reaches another's batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from service.config import Settings
from service.errors import UnsupportedMediaType
from service.kinds import InputKind, Prepared
from service.repository import ModelVersion
from service.runtime import Feeds


def require_kind(mv: ModelVersion, kind: type[InputKind]) -> None:
    """415 when the request's inputs are not the kind the model takes."""
    if not isinstance(mv.kind, kind):
        raise UnsupportedMediaType(mv.kind.refusal(mv.name, kind))


async def prepare(
    mv: ModelVersion, kind: type[InputKind], items: Sequence[Any], settings: Settings, pool: Executor
) -> Prepared:
    """The model's kind validates and preprocesses the items into feeds (4xx here, before queueing)."""
    require_kind(mv, kind)
    return await mv.kind.prepare(items, settings, pool)


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
