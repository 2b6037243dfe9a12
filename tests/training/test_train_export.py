"""Train each kind end to end on fast settings, export, and check parity, padding invariance and accuracy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from service.kinds.image.preprocess import ImageSpec
from service.kinds.text.preprocess import Tokenizer, pad_batch
from training.export import ExportError, check_parity, export, load_checkpoint
from training.kinds.image.recipe import train_image_model
from training.kinds.text.augment import clause_phrases
from training.kinds.text.recipe import train_text_model
from training.train import TrainConfig

pytestmark = pytest.mark.slow

FAST = TrainConfig(epochs=4, batch_size=64, progress=False)


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_image_model("digits", "digits", tmp_path_factory.mktemp("runs"), FAST)


@pytest.fixture(scope="module")
def text_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LSTM on 1,600 short phrases from the augmentation pools, written as a CSV (a user's format)."""
    folder = tmp_path_factory.mktemp("text")
    phrases = clause_phrases(np.random.default_rng(0), 1600)
    with (folder / "phrases.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((text, ("negative", "positive")[label]) for text, label in phrases)
    return train_text_model(str(folder / "phrases.csv"), "sentiment", folder / "runs", FAST)


def test_image_model_trains_exports_and_matches_torch(image_checkpoint: Path, tmp_path: Path) -> None:
    report = json.loads((image_checkpoint.parent / "report.json").read_text())
    assert report["test"]["accuracy"] > 0.85  # four fast epochs
    assert len(report["test"]["confusion_matrix"]) == 10
    assert (image_checkpoint.parent / "confusion.png").stat().st_size > 1000
    target = export(image_checkpoint, tmp_path, "digits")
    assert target == tmp_path / "digits" / "1"
    meta = json.loads((target / "model.json").read_text())
    assert meta["inputs"] == [{"name": "pixels", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}]
    assert meta["preprocessing"]["image"]["channels"] == 1
    assert meta["export"]["parity_max_abs_diff"] <= 1e-4
    sess = ort.InferenceSession(str(target / "model.onnx"))
    _, net = load_checkpoint(image_checkpoint)
    for n in (1, 7, 33):
        pixels = np.random.default_rng(n).integers(0, 255, (n, 28, 28, 1), dtype=np.uint8)
        logits, probs = sess.run(None, {"pixels": pixels})
        with torch.no_grad():
            assert np.abs(net(torch.from_numpy(pixels)).numpy() - logits).max() <= 1e-4
        assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert export(image_checkpoint, tmp_path, "digits") == tmp_path / "digits" / "2"  # next free version


def test_text_model_is_padding_invariant(text_checkpoint: Path, tmp_path: Path) -> None:
    report = json.loads((text_checkpoint.parent / "report.json").read_text())
    assert report["test"]["accuracy"] > 0.8
    target = export(text_checkpoint, tmp_path, "sentiment", version=3)
    meta = json.loads((target / "model.json").read_text())
    pre = meta["preprocessing"]["text"]
    assert meta["inputs"] == [{"name": "ids", "datatype": "INT64", "shape": [-1, -1]}]
    tok = Tokenizer.from_preprocessing(pre, model_dir=target)
    sess = ort.InferenceSession(str(target / "model.onnx"))
    texts = [
        "good",
        "not bad at all",
        "a dreadful, tedious and painfully long film that i hated from the start",
    ]
    ids = [tok.encode(t) for t in texts]
    batched = sess.run(["logits"], {"ids": pad_batch(ids, tok.pad_id)})[0]
    for i, seq in enumerate(ids):
        alone = sess.run(["logits"], {"ids": seq[None]})[0][0]
        assert np.abs(alone - batched[i]).max() <= 1e-4
        extra = np.concatenate([seq, np.zeros(20, np.int64)])[None]  # more padding than any batch needs
        assert np.abs(sess.run(["logits"], {"ids": extra})[0][0] - alone).max() <= 1e-4


def test_export_fails_loudly_when_the_graph_disagrees(image_checkpoint: Path, tmp_path: Path) -> None:
    target = export(image_checkpoint, tmp_path, "digits")
    ckpt, net = load_checkpoint(image_checkpoint)
    with torch.no_grad():
        net.head[1].bias += 1.0  # the torch model now differs from the exported graph
    with pytest.raises(ExportError, match="differs from torch"):
        check_parity(ckpt, net, target / "model.onnx")


def test_int8_export_option_checks_the_accuracy_drop(text_checkpoint: Path, tmp_path: Path) -> None:
    target = export(text_checkpoint, tmp_path, "sentiment", int8=True)
    q = json.loads((target / "model.json").read_text())["export"]["quantization"]
    assert q["drop_points"] <= 0.5 and q["size_int8"] < q["size_fp32"]
    assert "max_probability_shift_alone_vs_batched" in q  # reported: dynamic int8 is not batch-invariant
    sess = ort.InferenceSession(str(target / "model.onnx"))
    ops = {node.op_type for node in onnx.load(str(target / "model.onnx")).graph.node}
    assert any("Integer" in op or "Quant" in op for op in ops)
    assert sess.run(["probabilities"], {"ids": np.array([[2, 3, 4]], dtype=np.int64)})[0].shape == (1, 2)


def test_export_refuses_an_unknown_kind_by_name(tmp_path: Path) -> None:
    from service.kinds import UnknownKind

    torch.save({"kind": "smell", "net_config": {}, "state_dict": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(UnknownKind, match=r"unknown input kind 'smell'; the kinds are: .*image.*text"):
        export(tmp_path / "checkpoint.pt", tmp_path / "models", "x")
    assert not (tmp_path / "models").exists()


def test_tabular_model_from_a_users_csv_trains_and_exports(tmp_path: Path) -> None:
    """A CSV with a label column (here: the committed churn rows, numeric and categorical), through the
    same CLI path as `modelserve train tabular`, exported with its parity check."""
    from service.cli import main
    from service.kinds.tabular.preprocess import TabularSpec

    data = Path(__file__).parent.parent / "data" / "churn-test.csv"
    argv = ["train", "tabular", "--data", str(data), "--label", "churn", "--name", "mine", "--epochs", "3"]
    argv += ["--runs", str(tmp_path / "runs"), "--models", str(tmp_path / "models"), "--no-progress"]
    argv += ["--unknown-category", "most_frequent", "--hidden", "32"]
    assert main(argv) == 0
    report = json.loads((tmp_path / "runs/mine/report.json").read_text())
    assert {"roc_auc", "balanced_accuracy", "majority_baseline"} <= report["test"].keys()
    assert (tmp_path / "runs/mine/confusion.png").stat().st_size > 1000
    meta = json.loads((tmp_path / "models/mine/1/model.json").read_text())
    assert meta["input_kind"] == "tabular" and meta["export"]["parity_max_abs_diff"] <= 1e-4
    spec = TabularSpec.from_preprocessing(meta["preprocessing"]["tabular"])
    contract = next(f for f in spec.features if f.name == "contract")
    assert contract.type == "categorical" and contract.fallback == "Month-to-month"
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 19]}]
    sess = ort.InferenceSession(str(tmp_path / "models/mine/1/model.onnx"))
    x, _ = spec.encode(
        [
            {
                f.name: f.default if f.default is not None else (f.categories or [f.min])[0]
                for f in spec.features
            }
        ]
    )
    alone = sess.run(["probabilities"], {"features": x})[0]
    batched = sess.run(["probabilities"], {"features": np.repeat(x, 7, axis=0)})[0]
    assert np.abs(batched - alone).max() <= 1e-5


def test_framed_image_model_declares_its_framing(tmp_path: Path) -> None:
    """An ink framing: augmented copies framed as served, the framing in model.json, both accuracies."""
    spec = ImageSpec(28, 28, 1, "mnist")
    fast = TrainConfig(epochs=1, batch_size=32, progress=False)
    checkpoint = train_image_model(
        "digits", "framed", tmp_path / "runs", fast, spec=spec, augment="handwriting", copies=1
    )
    report = json.loads((checkpoint.parent / "report.json").read_text())
    assert report["framing"] == "mnist" and report["augment"] == {"name": "handwriting", "copies": 1}
    assert report["test"]["accuracy"] > 0.3 and "test_unframed_accuracy" in report  # one epoch: it learns
    meta = json.loads((export(checkpoint, tmp_path, "framed") / "model.json").read_text())
    assert ImageSpec.from_preprocessing(meta["preprocessing"]["image"]) == spec
