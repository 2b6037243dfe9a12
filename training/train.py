"""The training loop: seeded, deterministic on CPU, a progress bar, validation each epoch, early stopping,
the best checkpoint kept, a JSON report and a confusion-matrix PNG.

    modelserve train image --data digits --name digits            # then: modelserve serve
    modelserve train text --data sentiment --name sentiment --epochs 12
"""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.datasets import Splits

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 5  # epochs without a better validation accuracy before stopping
    seed: int = 0
    progress: bool = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def predict_scores(model: nn.Module, batches: Iterator[Batch]) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, softmax probabilities (N, K)) over the batches, in eval mode."""
    model.eval()
    truth, scores = [], []
    with torch.no_grad():
        for x, y in batches:
            truth.append(y.numpy())
            scores.append(torch.softmax(model(x), dim=1).numpy())
    return np.concatenate(truth), np.concatenate(scores)


def predict_labels(model: nn.Module, batches: Iterator[Batch]) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels) over the batches, in eval mode."""
    truth, scores = predict_scores(model, batches)
    return truth, scores.argmax(axis=1)


def fit(
    model: nn.Module,
    train_batches: Callable[[int], Iterator[Batch]],
    val_batches: Callable[[], Iterator[Batch]],
    cfg: TrainConfig,
) -> dict[str, Any]:
    """Train in place, leave the best validation weights loaded; return the history."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    loss_fn = nn.CrossEntropyLoss()
    best_acc, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, n = 0.0, 0
        bar = tqdm(
            train_batches(epoch), desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not cfg.progress
        )
        for x, y in bar:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += loss.item() * len(y)
            n += len(y)
            bar.set_postfix(loss=f"{total / n:.4f}")
        sched.step()
        truth, preds = predict_labels(model, val_batches())
        val_acc = float((truth == preds).mean())
        history.append(
            {"epoch": epoch, "train_loss": round(total / max(n, 1), 5), "val_accuracy": round(val_acc, 5)}
        )
        log.info("epoch %d: train loss %.4f, validation accuracy %.4f", epoch, total / max(n, 1), val_acc)
        if val_acc > best_acc:
            best_acc, best_epoch, best_state = val_acc, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            log.info("early stop: no better validation accuracy for %d epochs", cfg.patience)
            break
    model.load_state_dict(best_state)
    return {"history": history, "best_epoch": best_epoch, "best_val_accuracy": round(best_acc, 5)}


def classification_report(
    truth: np.ndarray, preds: np.ndarray, classes: list[str], scores: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy, per-class recall, confusion matrix; with ``scores`` (N, K) also the calibration: the
    mean probability of the predicted class when right and when wrong."""
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth, preds), 1)
    per_class = {
        c: round(float(confusion[i, i] / max(confusion[i].sum(), 1)), 5) for i, c in enumerate(classes)
    }
    report: dict[str, Any] = {
        "accuracy": round(float((truth == preds).mean()), 5),
        "n": len(truth),
        "per_class_recall": per_class,
        "confusion_matrix": confusion.tolist(),
    }
    if scores is not None:
        top = scores.max(axis=1)
        right = truth == preds
        report["calibration"] = {
            "mean_score_right": round(float(top[right].mean()), 5) if right.any() else None,
            "mean_score_wrong": round(float(top[~right].mean()), 5) if (~right).any() else None,
        }
    return report


def save_confusion_png(report: dict[str, Any], classes: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(report["confusion_matrix"])
    size = 2.5 + 0.45 * len(classes)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: accuracy {report['accuracy']:.2%}")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
                fontsize=8,
            )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict[str, Any], classes: list[str], out_dir: Path, title: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    save_confusion_png(report["test"], classes, out_dir / "confusion.png", title)


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def report_head(splits: Splits[Any], cfg: TrainConfig, notes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The opening of every training report: the data, its notes, the split sizes, when, the seed."""
    return {
        "data": splits.source,
        **(notes or {}),
        "sizes": {
            "train": len(splits.train.labels),
            "validation": len(splits.validation.labels),
            "test": len(splits.test.labels),
        },
        "trained_at": now_iso(),
        "seed": cfg.seed,
    }


def save_checkpoint(
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
        **report_head(splits, cfg, notes),
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
