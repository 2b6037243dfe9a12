"""The /predict answer's codec: from a model's scores to labels, scores and the k best (also V2's
classification extension)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from service.kinds.base import Prepared
    from service.repository.versions import ModelVersion
    from service.runtime import Feeds


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


def encode_predictions(mv: ModelVersion, prepared: Prepared, outputs: Feeds, k: int) -> list[dict[str, Any]]:
    """/predict's answer per input: the k best labels, with the kind's notes for each row (tabular:
    values outside the training range)."""
    predictions = top_k(mv, scores_of(mv, outputs), k)
    if prepared.notes is not None:
        for prediction, note in zip(predictions, prepared.notes, strict=True):
            prediction.update(note)
    return predictions
