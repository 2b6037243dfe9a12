"""The shipped models, re-checked from their ONNX files with onnxruntime (no torch)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort

from service.preprocess.image import ImageSpec
from service.preprocess.text import Tokenizer, pad_batch
from tests.conftest import MODELS
from training.data import load_digits, load_texts


def test_digits_test_accuracy_at_least_97_percent() -> None:
    meta = json.loads((MODELS / "digits/1/model.json").read_text())
    pre = meta["preprocessing"]["image"]
    test = load_digits(ImageSpec.from_preprocessing(pre), seed=0).test
    sess = ort.InferenceSession(str(MODELS / "digits/1/model.onnx"))
    probs = sess.run(["probabilities"], {"pixels": test.images})[0]
    accuracy = float((probs.argmax(1) == test.labels).mean())
    assert accuracy >= 0.97
    assert abs(accuracy - meta["training"]["test"]["accuracy"]) < 1e-4  # the report is true (5 places)


def test_sentiment_test_accuracy_and_plain_cases() -> None:
    root = MODELS / "sentiment/1"
    meta = json.loads((root / "model.json").read_text())
    pre = meta["preprocessing"]["text"]
    tok = Tokenizer.from_preprocessing(pre, model_dir=root)
    sess = ort.InferenceSession(str(root / "model.onnx"))

    def classify(texts: list[str]) -> np.ndarray:
        return sess.run(["probabilities"], {"ids": pad_batch([tok.encode(t) for t in texts], tok.pad_id)})[0]

    test = load_texts("sentiment").test
    accuracy = float((classify(test.texts).argmax(1) == test.labels).mean())
    assert accuracy >= 0.85
    labels = meta["labels"]
    plain = {
        "I loved this film": "positive",
        "terrible, a waste of money": "negative",
        "not bad at all": "positive",
    }
    assert [labels[i] for i in classify(list(plain)).argmax(1)] == list(plain.values())
