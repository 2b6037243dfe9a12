"""The audio recipe: log-mel features -> conv + RNN -> checkpoint, augmented in feature space while training.

modelserve train audio --data commands --name commands        # the generated set (make data)
modelserve train audio --data commands --name proxy --hold-out-engine flite   # the unseen-engine proxy
modelserve train audio --data my_words/ --name my_words       # one sub-folder of WAVs per class
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.kinds.audio.preprocess import AudioSpec
from training.kinds.audio.data import AudioData, load_audio
from training.kinds.audio.feature_augment import FeatureAugment, augment_features
from training.kinds.audio.proxy import held_out_engine_splits, subsample
from training.nets import AudioCRNN, AudioCRNNConfig, band_input, lifter_matrix
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


def _batches(
    data: AudioData,
    batch_size: int,
    rng: np.random.Generator | None,
    augment: tuple[AudioSpec, np.ndarray, FeatureAugment] | None = None,
) -> Iterator[Batch]:
    order = rng.permutation(len(data.labels)) if rng is not None else np.arange(len(data.labels))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x = data.features[idx]
        if rng is not None and augment is not None:
            x = augment_features(x, rng, *augment)
        yield torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(data.labels[idx])


def train_audio_model(
    source: str,
    name: str,
    runs_dir: Path,
    cfg: TrainConfig,
    spec: AudioSpec | None = None,
    augment: FeatureAugment | None = None,
    hold_out_engine: str | None = None,
    train_fraction: float = 1.0,
    **net_options: Any,
) -> Path:
    """Train a conv + RNN on ``source`` and write runs/<name>/{checkpoint.pt, report.json, confusion.png}.

    ``hold_out_engine`` (a generated set only): train on the other engine alone and validate and test on
    this one (training/kinds/audio/proxy.py), the proxy for voices never heard that settings are chosen on.
    ``train_fraction`` < 1 trains on a seeded part of the training clips (quick comparisons)."""

    seed_everything(cfg.seed)
    spec = spec or AudioSpec()
    augment = augment or FeatureAugment.off()  # the CLI's default is on (the proxy's choice with conv2d)
    splits = load_audio(source, spec, cfg.seed)
    if hold_out_engine is not None:
        splits = held_out_engine_splits(splits, hold_out_engine)
    if train_fraction < 1.0:
        splits.train = subsample(splits.train, train_fraction, cfg.seed)
    net_cfg = AudioCRNNConfig(n_mels=spec.n_mels, num_classes=len(splits.classes), **net_options)
    smooth = torch.from_numpy(lifter_matrix(net_cfg.n_mels, net_cfg.lifter)) if net_cfg.lifter else None
    with torch.no_grad():  # the band statistics of what the graph standardises: the same function
        stats_of = band_input(torch.from_numpy(splits.train.features), net_cfg.norm, smooth).numpy()
    mean = stats_of.mean(axis=(0, 1))
    std = stats_of.std(axis=(0, 1)) + 1e-3
    del stats_of
    net_cfg = replace(net_cfg, mean=tuple(np.round(mean, 4).tolist()), std=tuple(np.round(std, 4).tolist()))
    model = AudioCRNN(net_cfg)
    # Masks are set to the band's mean level (of the features as stored: the masks act before the net).
    fill = splits.train.features.mean(axis=(0, 1)).astype(np.float32)
    rng = np.random.default_rng(cfg.seed)
    log.info("%s: %s clips to train on, %d classes", name, len(splits.train.labels), len(splits.classes))
    history = fit(
        model,
        lambda _e: _batches(splits.train, cfg.batch_size, rng, (spec, fill, augment)),
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
        notes={
            "feature_augment": asdict(augment),
            **({"held_out_engine": hold_out_engine} if hold_out_engine else {}),
            **({"train_fraction": train_fraction} if train_fraction < 1.0 else {}),
        },
    )
