"""The image recipe `modelserve train image` runs: framed pictures (plus augmentation) -> CNN -> checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from service.kinds.image.preprocess import ImageSpec
from training.datasets import ImageData, Splits
from training.kinds.image.augment import AUGMENTATIONS, Augment
from training.kinds.image.data import framed, load_images
from training.kinds.image.sources import IMAGE_SOURCES
from training.nets import ImageCNN, ImageCNNConfig
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


def default_image_spec(source: str) -> ImageSpec:
    """A pinned source's own size and framing; 28x28 grey for digits and MNIST folders, 32x32 RGB
    otherwise (CIFAR-10's shape)."""
    if source in IMAGE_SOURCES:
        return ImageSpec(28, 28, 1, IMAGE_SOURCES[source].framing)
    path = Path(source)
    if source == "digits" or (
        path.is_dir() and any(p.name.startswith("train-images") for p in path.iterdir())
    ):
        return ImageSpec(28, 28, 1)
    return ImageSpec(32, 32, 3)


def _shifted(images: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Random translations by up to ``max_shift`` pixels, zero-filled: cheap augmentation."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return np.stack([padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def _image_batches(
    data: ImageData, batch_size: int, rng: np.random.Generator | None, max_shift: int = 0
) -> Iterator[Batch]:
    order = rng.permutation(len(data.labels)) if rng is not None else np.arange(len(data.labels))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        images = data.images[idx]
        if rng is not None and max_shift:
            images = _shifted(images, rng, max_shift)
        yield torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(data.labels[idx])


def _framed(data: ImageData, spec: ImageSpec) -> ImageData:
    """The stored pictures as the service frames them."""
    return ImageData(
        np.stack([framed(Image.fromarray(img[..., 0]), spec) for img in data.images]), data.labels
    )


def _augmented_images(
    data: ImageData, spec: ImageSpec, augment: Augment, rng: np.random.Generator, copy: int
) -> ImageData:
    """One varied copy of the pictures, each framed by the serving framing."""
    images = []
    for i, (img, label) in enumerate(zip(data.images, data.labels, strict=True)):
        images.append(framed(augment(img, int(label), rng), spec))
        if (i + 1) % 10000 == 0:
            log.info("augmented copy %d: %d of %d pictures", copy + 1, i + 1, len(data.labels))
    return ImageData(np.stack(images), data.labels)


def _cached_copy(
    folder: Path, data: ImageData, spec: ImageSpec, augment: str, seed: int, copy: int
) -> ImageData:
    """An augmented copy, kept in the run folder: a rerun with another network or schedule reuses it."""
    path = (
        folder
        / f"augmented-{augment}-{spec.framing}-{spec.height}-seed{seed}-{copy}-of-{len(data.labels)}.npy"
    )
    if path.exists():
        return ImageData(np.load(path), data.labels)
    varied = _augmented_images(data, spec, AUGMENTATIONS[augment], np.random.default_rng([seed, copy]), copy)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(path, varied.images)
    return varied


def _epoch_mix(stored: ImageData, varied: ImageData, share: float, rng: np.random.Generator) -> ImageData:
    """Per picture, the varied copy with probability ``share``, else the stored picture (which is what a
    V2 client sends as an already framed tensor)."""
    pick = (rng.random(len(stored.labels)) < share)[:, None, None, None]
    return ImageData(np.where(pick, varied.images, stored.images), stored.labels)


def train_image_model(
    source: str,
    name: str,
    runs_dir: Path,
    cfg: TrainConfig,
    spec: ImageSpec | None = None,
    widths: tuple[int, ...] | None = None,
    augment: str | None = None,
    copies: int = 2,
    pool: str = "mean",
) -> Path:
    """Train a CNN on ``source`` and write runs/<name>/{checkpoint.pt, report.json, confusion.png}.

    With an ink framing (``spec.framing``), validation and test pictures are framed as the service frames
    them, and each epoch trains on the stored pictures mixed with one of ``copies`` augmented, framed
    copies (``augment``: a name in training.kinds.image.augment.AUGMENTATIONS)."""
    seed_everything(cfg.seed)
    spec = spec or default_image_spec(source)
    splits: Splits[ImageData] = load_images(source, replace(spec, framing="resize"), cfg.seed)
    scaled = splits.train.images.reshape(-1, spec.channels).astype(np.float64) / 255.0
    net_cfg = ImageCNNConfig(
        channels=spec.channels,
        image_size=spec.height,
        num_classes=len(splits.classes),
        mean=tuple(np.round(scaled.mean(0), 5).tolist()),
        std=tuple(np.round(scaled.std(0) + 1e-6, 5).tolist()),
        pool=pool,
    )
    if widths:
        net_cfg.widths = widths
    model = ImageCNN(net_cfg)
    rng = np.random.default_rng(cfg.seed)
    extra: dict[str, Any] = {"framing": spec.framing}
    if spec.framing == "resize":
        validation, test = splits.validation, splits.test
        shift = max(1, spec.height // 14)
        epoch_data: Callable[[int], ImageData] = lambda _e: splits.train  # noqa: E731
    else:
        log.info("framing validation and test pictures (%s)", spec.framing)
        validation, test = _framed(splits.validation, spec), _framed(splits.test, spec)
        shift = 0  # the framing centres every picture
        if augment:
            log.info(
                "augmenting: %d framed copies of %d pictures (%s)", copies, len(splits.train.labels), augment
            )
            varied = [
                _cached_copy(runs_dir / name, splits.train, spec, augment, cfg.seed, i) for i in range(copies)
            ]
            extra["augment"] = {"name": augment, "copies": copies}
        else:
            varied = [_framed(splits.train, spec)]
        epoch_data = lambda e: _epoch_mix(splits.train, varied[e % len(varied)], 0.75, rng)  # noqa: E731
    history = fit(
        model,
        lambda e: _image_batches(epoch_data(e), cfg.batch_size, rng, shift),
        lambda: _image_batches(validation, 256, None),
        cfg,
    )
    truth, preds = predict_labels(model, _image_batches(test, 256, None))
    if spec.framing != "resize":
        # The V2 tensor path: the stored test pictures, unframed, as a client sends MNIST-framed tensors.
        raw_truth, raw_preds = predict_labels(model, _image_batches(splits.test, 256, None))
        extra["test_unframed_accuracy"] = round(float((raw_truth == raw_preds).mean()), 5)
    preprocessing = {
        "image": {
            "height": spec.height,
            "width": spec.width,
            "channels": spec.channels,
            "framing": spec.framing,
            "resize": "bilinear",
            "mean": list(net_cfg.mean),
            "std": list(net_cfg.std),
        }
    }
    return save_checkpoint(
        source,
        runs_dir / name,
        name,
        "image",
        model,
        asdict(net_cfg),
        splits,
        cfg,
        history,
        classification_report(truth, preds, splits.classes),
        preprocessing,
        samples=test.images[:7],
        vocab=None,
        extra=extra,
    )
