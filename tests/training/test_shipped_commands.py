"""The shipped `commands` model, re-checked from its ONNX file with onnxruntime (no torch): accuracy on the
committed held-out clips (voices it never heard), augmented and clean, and on the whole generated test
split (augmented and clean) when `make data` has built it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.kinds.audio.preprocess import AudioSpec, features
from tests.conftest import MODELS, ROOT

MODEL = MODELS / "commands" / "2"
HELD_OUT = Path(__file__).parents[1] / "data" / "commands"
GENERATED = ROOT / "data" / "commands"
CLEAN = Path(__file__).parents[1] / "data" / "commands-clean"
GENERATED_CLEAN = ROOT / "data" / "commands-clean"


def classify(paths: list[Path]) -> np.ndarray:
    meta = json.loads((MODEL / "model.json").read_text())
    spec = AudioSpec.from_preprocessing(meta["preprocessing"]["audio"])
    feats = np.stack([features(p.read_bytes(), spec) for p in paths])
    sess = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    probs = sess.run(["probabilities"], {"features": feats})[0]
    return np.asarray(meta["labels"])[probs.argmax(1)]


def test_held_out_voices_are_recognised() -> None:
    paths = sorted(HELD_OUT.glob("*/*.wav"))
    assert len(paths) == 66
    truth = np.asarray([p.parent.name for p in paths])
    accuracy = float((classify(paths) == truth).mean())
    # 66 clips (one miss is 1.5 points); the shipped model gets 61 (92.4%; version 1 got 58). The whole
    # augmented test split: 94.7% (docs/training.md).
    assert accuracy >= 0.89, accuracy


def test_held_out_voices_spoken_clean_are_recognised() -> None:
    paths = sorted(CLEAN.glob("*/*.wav"))
    assert len(paths) == 66
    truth = np.asarray([p.parent.name for p in paths])
    accuracy = float((classify(paths) == truth).mean())
    # The same voices without noise/room/phone line: the shipped model gets 65 of 66 (98.5%).
    assert accuracy >= 0.95, accuracy


def test_report_states_the_accuracy_and_the_confusion_matrix() -> None:
    meta = json.loads((MODEL / "model.json").read_text())
    test = meta["training"]["test"]
    labels = meta["labels"]
    assert test["accuracy"] >= 0.93  # 0.9466 shipped (version 1: 0.9204), augmented like training
    cm = np.asarray(test["confusion_matrix"])
    assert cm.shape == (len(labels), len(labels)) and cm.sum() == test["n"]
    assert set(test["per_class_recall"]) == set(labels)
    assert abs(np.trace(cm) / cm.sum() - test["accuracy"]) < 1e-4


@pytest.mark.skipif(
    not (GENERATED / "manifest.json").exists(), reason="the generated set is built by `make data`"
)
def test_whole_test_split_matches_the_report() -> None:
    meta = json.loads((MODEL / "model.json").read_text())
    paths = sorted(GENERATED.glob("test/*/*.wav"))
    truth = np.asarray([p.parent.name for p in paths])
    accuracy = float((classify(paths) == truth).mean())
    assert abs(accuracy - meta["training"]["test"]["accuracy"]) < 1e-4


@pytest.mark.skipif(not GENERATED_CLEAN.exists(), reason="the clean test split is built by `make data`")
def test_whole_clean_test_split_meets_the_target() -> None:
    paths = sorted(GENERATED_CLEAN.glob("*/*.wav"))
    assert len(paths) == 3128
    truth = np.asarray([p.parent.name for p in paths])
    accuracy = float((classify(paths) == truth).mean())
    assert accuracy >= 0.98, accuracy  # the target was 97%; the shipped model: 99.30% (v1 98.43%)
