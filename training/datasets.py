"""What every kind's data loaders share: train/validation/test ``Splits``, stratified and seeded.

The loaders live with their kind (training/kinds/<kind>/data.py). Where a format has no validation (or
test) part, one is carved from its training part, stratified and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np


@dataclass
class ImageData:
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int64


@dataclass
class TextData:
    texts: list[str]
    labels: np.ndarray  # (N,) int64


D = TypeVar("D", ImageData, TextData)


@dataclass
class Splits(Generic[D]):
    train: D
    validation: D
    test: D
    classes: list[str]
    source: str


def take(data: D, idx: np.ndarray) -> D:
    if isinstance(data, ImageData):
        return ImageData(data.images[idx], data.labels[idx])  # type: ignore[return-value]
    return TextData([data.texts[i] for i in idx], data.labels[idx])


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Index arrays, one per fraction (the last takes the rest), each class split in the same ratios."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        bounds = np.cumsum([round(f * len(idx)) for f in fractions[:-1]])
        for part, chunk in zip(parts, np.split(idx, bounds), strict=True):
            part.extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def three_way(data: D, classes: list[str], source: str, seed: int) -> Splits[D]:
    train, val, test = stratified_split(data.labels, (0.7, 0.15, 0.15), seed)
    return Splits(take(data, train), take(data, val), take(data, test), classes, source)


def with_validation(train: D, test: D, classes: list[str], source: str, seed: int) -> Splits[D]:
    fit, val = stratified_split(train.labels, (0.9, 0.1), seed)
    return Splits(take(train, fit), take(train, val), test, classes, source)
