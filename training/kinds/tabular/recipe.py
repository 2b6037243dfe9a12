"""The tabular recipe: a table -> encoded rows -> MLP -> report -> checkpoint.

    modelserve train tabular --data letters --name letters
    modelserve train tabular --data churn --name churn
    modelserve train tabular --data my.csv --label outcome --name mine [--categorical plan,region]

Rows are encoded by service/kinds/tabular/preprocess.py, exactly as the server encodes a client's rows.
For two classes the report adds ROC AUC and balanced accuracy, beside the majority-class baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.kinds.tabular.preprocess import TabularSpec
from training.kinds.tabular.data import Table, feature_spec, load_table
from training.nets import TabularMLP, TabularMLPConfig
from training.train import (
    Batch,
    TrainConfig,
    classification_report,
    fit,
    now_iso,
    predict_labels,
    seed_everything,
    write_report,
)

log = logging.getLogger(__name__)


def encoded(table: Table, spec: TabularSpec, part: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's rows as the model's input (float32 (N, F)) and labels."""
    rows, labels = table.part(part)
    x, _ = spec.encode(rows)
    return x, labels


def _batches(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator | None) -> Iterator[Batch]:
    order = rng.permutation(len(y)) if rng is not None else np.arange(len(y))
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        if rng is not None and len(idx) < 2:
            continue  # batch norm needs two rows in training
        yield torch.from_numpy(x[idx]), torch.from_numpy(y[idx])


def net_config(spec: TabularSpec, x_train: np.ndarray, num_classes: int, **options: Any) -> TabularMLPConfig:
    numeric = [j for j, f in enumerate(spec.features) if f.type == "numeric"]
    columns = x_train[:, numeric].astype(np.float64)
    return TabularMLPConfig(
        num_features=len(spec.features),
        num_classes=num_classes,
        numeric=tuple(numeric),
        mean=tuple(np.round(columns.mean(0), 6).tolist()),
        std=tuple(np.round(columns.std(0) + 1e-6, 6).tolist()),
        categorical=tuple(
            (j, len(f.categories or ())) for j, f in enumerate(spec.features) if f.type == "categorical"
        ),
        **options,
    )


def binary_report(truth: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """ROC AUC and balanced accuracy of the positive (second) class, with the majority-class baseline."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    preds = probs.argmax(1)
    majority = np.bincount(truth, minlength=2).argmax()
    return {
        "roc_auc": round(float(roc_auc_score(truth, probs[:, 1])), 5),
        "balanced_accuracy": round(float(balanced_accuracy_score(truth, preds)), 5),
        "majority_baseline": {
            "accuracy": round(float((truth == majority).mean()), 5),
            "balanced_accuracy": 0.5,
            "roc_auc": 0.5,
        },
    }


def train_tabular_model(
    source: str,
    name: str,
    runs_dir: Path,
    cfg: TrainConfig,
    label: str | None = None,
    categorical: set[str] | None = None,
    fallback: str | None = None,
    **net_options: Any,
) -> Path:
    """Train an MLP on ``source`` and write runs/<name>/{checkpoint.pt, report.json, confusion.png}.
    ``fallback="most_frequent"``: an unknown category is read as the column's most frequent one (and
    flagged in the answer) instead of refused."""
    seed_everything(cfg.seed)
    # Layers this small gain nothing from intra-op threads, and on a busy machine their spin-waits cost
    # over ten times the work (measured: 71 s vs 4 s an epoch on two shared cores).
    torch.set_num_threads(1)
    table = load_table(source, label, categorical, cfg.seed)
    spec = feature_spec(table)
    if fallback == "most_frequent":
        spec = _with_fallbacks(spec, table)
    x_train, y_train = encoded(table, spec, "train")
    x_val, y_val = encoded(table, spec, "validation")
    x_test, y_test = encoded(table, spec, "test")
    net_cfg = net_config(spec, x_train, len(table.classes), **net_options)
    model = TabularMLP(net_cfg)
    rng = np.random.default_rng(cfg.seed)
    history = fit(
        model,
        lambda _e: _batches(x_train, y_train, cfg.batch_size, rng),
        lambda: _batches(x_val, y_val, 1024, None),
        cfg,
    )
    truth, preds = predict_labels(model, _batches(x_test, y_test, 1024, None))
    test = classification_report(truth, preds, table.classes)
    if len(table.classes) == 2:
        with torch.no_grad():
            probs = torch.softmax(model(torch.from_numpy(x_test)), dim=1).numpy()
        test |= binary_report(y_test, probs)
    report = {
        "data": table.source,
        "sizes": {part: len(idx) for part, idx in table.split.items()},
        "features": len(spec.features),
        "trained_at": now_iso(),
        "seed": cfg.seed,
        **history,
        "test": test,
    }
    out_dir = runs_dir / name
    write_report(report, table.classes, out_dir, f"{name} (tabular)")
    log.info("%s: test accuracy %.4f on %d rows", name, test["accuracy"], test["n"])
    path = out_dir / "checkpoint.pt"
    torch.save(
        {
            "kind": "tabular",
            "net_config": asdict(net_cfg),
            "state_dict": model.state_dict(),
            "classes": table.classes,
            "preprocessing": {"tabular": spec.model_dump(exclude_none=True)},
            "report": report,
            "samples": x_test[:7],
            "data": {
                "source": source,
                "seed": cfg.seed,
                "label": label,
                "categorical": sorted(categorical or ()),
            },
        },
        path,
    )
    return path


def _with_fallbacks(spec: TabularSpec, table: Table) -> TabularSpec:
    features = []
    for f in spec.features:
        if f.type == "categorical":
            rows, _ = table.part("train")
            values = [str(r[f.name]) for r in rows if r[f.name] is not None]
            f = f.model_copy(update={"fallback": max(f.categories or [], key=values.count)})
        features.append(f)
    return TabularSpec(features=features)


def held_out_split(ckpt: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint's test split, reloaded from its source and encoded with its feature spec."""
    data = ckpt["data"]
    table = load_table(data["source"], data.get("label"), set(data.get("categorical") or ()), data["seed"])
    return encoded(table, TabularSpec.from_preprocessing(ckpt["preprocessing"]["tabular"]), "test")
