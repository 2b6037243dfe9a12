"""The shipped models, re-checked from their ONNX files with onnxruntime (no torch); the image models
in test_shipped_image_models.py."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.kinds.text.preprocess import Tokenizer, pad_batch
from tests.conftest import MODELS

DATA = Path(__file__).parent.parent / "data"


def _sentiment() -> tuple[dict, Callable[[list[str]], np.ndarray]]:
    root = MODELS / "sentiment/1"
    meta = json.loads((root / "model.json").read_text())
    tok = Tokenizer.from_preprocessing(meta["preprocessing"]["text"], model_dir=root)
    sess = ort.InferenceSession(str(root / "model.onnx"))

    def classify(texts: list[str]) -> np.ndarray:
        return sess.run(["probabilities"], {"ids": pad_batch([tok.encode(t) for t in texts], tok.pad_id)})[0]

    return meta, classify


def _labelled(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def test_sentiment_held_out_rotten_tomatoes_accuracy() -> None:
    """The whole held-out test split (tests/data/README.md), re-checked from the ONNX file."""
    meta, classify = _sentiment()
    texts, labels = _labelled(DATA / "rotten_tomatoes_test.csv")
    assert len(texts) == meta["training"]["sizes"]["test"]
    predicted = [meta["labels"][i] for i in classify(texts).argmax(1)]
    accuracy = float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))
    assert accuracy >= 0.78
    assert abs(accuracy - meta["training"]["test"]["accuracy"]) < 1e-4  # the report is true (5 places)


def test_sentiment_plain_cases_and_own_out_of_domain_sentences() -> None:
    meta, classify = _sentiment()
    plain = {
        "good": "positive",
        "Good movie.": "positive",
        "I loved this film": "positive",
        "not bad at all": "positive",
        "I hate it": "negative",
        "This is the worst product ever.": "negative",
        "terrible, a waste of money": "negative",
    }
    assert [meta["labels"][i] for i in classify(list(plain)).argmax(1)] == list(plain.values())
    # Product reviews, tweets and short opinions written for this project (never trained on).
    texts, labels = _labelled(DATA / "sentiment_own.csv")
    predicted = [meta["labels"][i] for i in classify(texts).argmax(1)]
    assert np.mean([p == t for p, t in zip(predicted, labels, strict=True)]) >= 0.85


def _tabular(name: str) -> tuple[dict, np.ndarray, list[str]]:
    """The shipped tabular model's probabilities on its committed held-out rows (tests/data/README.md),
    encoded by the service's own row encoder, run from the ONNX file; and the true labels."""
    from service.kinds.tabular.preprocess import TabularSpec

    root = MODELS / name / "1"
    meta = json.loads((root / "model.json").read_text())
    spec = TabularSpec.from_preprocessing(meta["preprocessing"]["tabular"])
    with (DATA / f"{name}-test.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    label = {"letters": "lettr", "churn": "churn"}[name]
    x, _ = spec.encode([{k: v for k, v in r.items() if k != label} for r in rows])
    sess = ort.InferenceSession(str(root / "model.onnx"))
    return meta, sess.run(["probabilities"], {"features": x})[0], [r[label] for r in rows]


def test_letters_held_out_accuracy_at_least_95_percent() -> None:
    meta, probs, truth = _tabular("letters")
    assert len(truth) == 4000 == meta["training"]["sizes"]["test"]
    predicted = [meta["labels"][i] for i in probs.argmax(1)]
    accuracy = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
    assert accuracy >= 0.95
    assert abs(accuracy - meta["training"]["test"]["accuracy"]) < 1e-4  # the report is true (5 places)


def test_churn_beats_the_majority_baseline_on_held_out_customers() -> None:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    meta, probs, truth = _tabular("churn")
    y = np.asarray([meta["labels"].index(t) for t in truth])
    report = meta["training"]["test"]
    accuracy = float((probs.argmax(1) == y).mean())
    auc = float(roc_auc_score(y, probs[:, 1]))
    balanced = float(balanced_accuracy_score(y, probs.argmax(1)))
    majority = float(np.mean(y == np.bincount(y).argmax()))
    assert auc >= 0.80 and balanced >= 0.65 and accuracy > majority
    assert abs(accuracy - report["accuracy"]) < 1e-4 and abs(auc - report["roc_auc"]) < 1e-4
    assert abs(balanced - report["balanced_accuracy"]) < 1e-4
    assert report["majority_baseline"]["accuracy"] == round(majority, 5)
