"""The audio recipe: log-mel features -> conv + LSTM -> checkpoint, with SpecAugment while training.

modelserve train audio --data commands --name commands        # the generated set (make data)
modelserve train audio --data my_words/ --name my_words       # one sub-folder of WAVs per class
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.kinds.audio.preprocess import AudioSpec
from training.kinds.audio.data import AudioData, load_audio
from training.nets import AudioCRNN, AudioCRNNConfig
from training.train import (
    Batch,
    TrainConfig,
    classification_report,
    fit,
    predict_labels,
    save_checkpoint,
    seed_everything,
)

log = logging.getLogger(__name__)


def _masked(x: np.ndarray, rng: np.random.Generator, fill: np.ndarray) -> np.ndarray:
    """SpecAugment: a time mask (<= 12 frames) and a band mask (<= 5 bands), set to the band mean."""
    n, t, m = x.shape
    width, start = (np.asarray(rng.integers(0, hi, size=n)) for hi in (13, t))
    frames = np.arange(t)[None, :]
    mask = (frames >= start[:, None]) & (frames < (start + width)[:, None])  # (N, T)
    x = np.where(mask[:, :, None], fill[None, None, :], x)
    width, start = (np.asarray(rng.integers(0, hi, size=n)) for hi in (6, m))
    bands = np.arange(m)[None, :]
    mask = (bands >= start[:, None]) & (bands < (start + width)[:, None])  # (N, M)
    return np.where(mask[:, None, :], fill[None, None, :], x)


def _batches(
    data: AudioData, batch_size: int, rng: np.random.Generator | None, fill: np.ndarray | None = None
) -> Iterator[Batch]:
    order = rng.permutation(len(data.labels)) if rng is not None else np.arange(len(data.labels))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x = data.features[idx]
        if rng is not None and fill is not None:
            x = _masked(x, rng, fill)
        yield torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(data.labels[idx])


def train_audio_model(
    source: str,
    name: str,
    runs_dir: Path,
    cfg: TrainConfig,
    spec: AudioSpec | None = None,
    **net_options: Any,
) -> Path:
    """Train a conv + LSTM on ``source`` and write runs/<name>/{checkpoint.pt, report.json, confusion.png}."""

    seed_everything(cfg.seed)
    spec = spec or AudioSpec()
    splits = load_audio(source, spec, cfg.seed)
    mean = splits.train.features.mean(axis=(0, 1))
    std = splits.train.features.std(axis=(0, 1)) + 1e-3
    net_cfg = AudioCRNNConfig(
        n_mels=spec.n_mels,
        num_classes=len(splits.classes),
        mean=tuple(np.round(mean, 4).tolist()),
        std=tuple(np.round(std, 4).tolist()),
        **net_options,
    )
    model = AudioCRNN(net_cfg)
    rng = np.random.default_rng(cfg.seed)
    log.info("%s: %s clips to train on, %d classes", name, len(splits.train.labels), len(splits.classes))
    history = fit(
        model,
        lambda _e: _batches(splits.train, cfg.batch_size, rng, mean.astype(np.float32)),
        lambda: _batches(splits.validation, 256, None),
        cfg,
    )
    truth, preds = predict_labels(model, _batches(splits.test, 256, None))
    return save_checkpoint(
        source,
        runs_dir / name,
        name,
        "audio",
        model,
        asdict(net_cfg),
        splits,  # type: ignore[arg-type]
        cfg,
        history,
        classification_report(truth, preds, splits.classes),
        {"audio": spec.to_preprocessing()},
        samples=splits.test.features[:7],
        vocab=None,
    )
