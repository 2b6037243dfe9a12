"""The shipped models, re-checked from their ONNX files with onnxruntime (no torch); the image models
in test_shipped_image_models.py."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.kinds.subword.preprocess import SubwordTokenizer
from service.kinds.text.preprocess import Tokenizer, pad_batch
from tests.conftest import MODELS

DATA = Path(__file__).parent.parent / "data"


def _sentiment_lstm() -> tuple[dict, Callable[[list[str]], np.ndarray]]:
    root = MODELS / "sentiment-lstm/1"
    meta = json.loads((root / "model.json").read_text())
    tok = Tokenizer.from_preprocessing(meta["preprocessing"]["text"], model_dir=root)
    sess = ort.InferenceSession(str(root / "model.onnx"))

    def classify(texts: list[str]) -> np.ndarray:
        return sess.run(["probabilities"], {"ids": pad_batch([tok.encode(t) for t in texts], tok.pad_id)})[0]

    return meta, classify


def _sentiment() -> tuple[dict, Callable[[list[str]], np.ndarray]]:
    """The transformer, with the service's own subword tokenizer from its tokenizer.json."""
    root = MODELS / "sentiment/2"
    meta = json.loads((root / "model.json").read_text())
    tok = SubwordTokenizer.from_preprocessing(meta["preprocessing"]["subword"], root)
    sess = ort.InferenceSession(str(root / "model.onnx"))

    def classify(texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), 64):
            enc = tok.encode(texts[start : start + 64])
            feeds = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}
            out.append(sess.run(["probabilities"], feeds)[0])
        return np.concatenate(out)

    return meta, classify


def _labelled(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def test_sentiment_lstm_held_out_rotten_tomatoes_accuracy() -> None:
    """The whole held-out test split (tests/data/README.md), re-checked from the ONNX file."""
    meta, classify = _sentiment_lstm()
    texts, labels = _labelled(DATA / "rotten_tomatoes_test.csv")
    assert len(texts) == meta["training"]["sizes"]["test"]
    predicted = [meta["labels"][i] for i in classify(texts).argmax(1)]
    accuracy = float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))
    assert accuracy >= 0.78
    assert abs(accuracy - meta["training"]["test"]["accuracy"]) < 1e-4  # the report is true (5 places)


PLAIN = {
    "good": "positive",
    "Good movie.": "positive",
    "I loved this film": "positive",
    "not bad at all": "positive",
    "I hate it": "negative",
    "This is the worst product ever.": "negative",
    "terrible, a waste of money": "negative",
}


def test_sentiment_lstm_plain_cases_and_own_out_of_domain_sentences() -> None:
    meta, classify = _sentiment_lstm()
    assert [meta["labels"][i] for i in classify(list(PLAIN)).argmax(1)] == list(PLAIN.values())
    # Product reviews, tweets and short opinions written for this project (never trained on).
    texts, labels = _labelled(DATA / "sentiment_own.csv")
    predicted = [meta["labels"][i] for i in classify(texts).argmax(1)]
    assert np.mean([p == t for p, t in zip(predicted, labels, strict=True)]) >= 0.85


def test_sentiment_transformer_held_out_rotten_tomatoes_accuracy() -> None:
    """The same held-out split, from the shipped transformer's ONNX file (int8-stored weights when
    model.json says so): its report is true, and it beats the LSTM's."""
    meta, classify = _sentiment()
    texts, labels = _labelled(DATA / "rotten_tomatoes_test.csv")
    assert len(texts) == meta["training"]["sizes"]["test"]
    predicted = [meta["labels"][i] for i in classify(texts).argmax(1)]
    accuracy = float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))
    shipped = (meta["export"]["quantization"] or {}).get("shipped", "fp32")
    reported = (
        meta["export"]["quantization"]["variants"][shipped]["test_accuracy"]
        if shipped != "fp32"
        else meta["training"]["test"]["accuracy"]
    )
    assert abs(accuracy - reported) < 1e-4  # the report is true (5 places)
    lstm = json.loads((MODELS / "sentiment-lstm/1/model.json").read_text())["training"]["test"]["accuracy"]
    assert accuracy > lstm


@pytest.mark.xfail(
    strict=True,
    reason="issue 19: the shipped two-epoch model reads it negative (0.60), where the issue's two-epoch "
    "trial read it right (docs/training.md); remove this mark when a retrain reads it positive.",
)
def test_sentiment_transformer_second_first_day_sentence() -> None:
    meta, classify = _sentiment()
    probs = classify(["Works exactly as described, would buy again."])
    assert meta["labels"][int(probs.argmax())] == "positive"


def test_sentiment_transformer_first_day_sentences_plain_cases_and_own_sentences() -> None:
    meta, classify = _sentiment()
    first_day = {"Terrible app, crashes every time I open it": "negative"}
    cases = {**first_day, **PLAIN}
    assert [meta["labels"][i] for i in classify(list(cases)).argmax(1)] == list(cases.values())
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
