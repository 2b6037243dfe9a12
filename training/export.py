"""Export a checkpoint to the model repository: models/<name>/<version>/{model.onnx, model.json}.

    modelserve export --checkpoint runs/digits/checkpoint.pt --name digits --version 1

torch.onnx.export with a dynamic batch axis (and sequence axis for text), onnx.checker, then onnxruntime
against torch on real inputs at batch sizes 1 and 7; text models are also checked for padding invariance.
Any difference above 1e-4 fails the export.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from service.preprocess.image import ImageSpec
from service.preprocess.text import Tokenizer, pad_batch
from training.nets import ImageCNN, ImageCNNConfig, TextLSTM, TextLSTMConfig

log = logging.getLogger(__name__)
TOLERANCE = 1e-4
OPSET = 17


class ExportError(RuntimeError):
    """The exported graph does not answer as the torch model does."""


class _WithProbabilities(nn.Module):
    """Both logits and softmax probabilities as graph outputs."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)  # (B, K)
        return logits, torch.softmax(logits, dim=1)


def load_checkpoint(path: Path) -> tuple[dict[str, Any], nn.Module]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    net: nn.Module
    if ckpt["kind"] == "image":
        cfg = dict(ckpt["net_config"])
        cfg["widths"], cfg["mean"], cfg["std"] = (tuple(cfg[k]) for k in ("widths", "mean", "std"))
        net = ImageCNN(ImageCNNConfig(**cfg))
    else:
        net = TextLSTM(TextLSTMConfig(**ckpt["net_config"]))
    net.load_state_dict(ckpt["state_dict"])
    return ckpt, net.eval()


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def _sample_batches(ckpt: dict[str, Any]) -> list[np.ndarray]:
    """Real inputs at batch sizes 1 and 7."""
    if ckpt["kind"] == "image":
        images = np.asarray(ckpt["samples"], dtype=np.uint8)
        return [images[:1], images[:7]]
    ids = _encoded_samples(ckpt)
    return [
        pad_batch(ids[:1], ckpt["preprocessing"]["text"]["pad_id"]),
        pad_batch(ids[:7], ckpt["preprocessing"]["text"]["pad_id"]),
    ]


def _encoded_samples(ckpt: dict[str, Any], texts: list[str] | None = None) -> list[np.ndarray]:
    """Token ids of ``texts`` (default: the checkpoint's sample texts) with the checkpoint's tokenizer."""
    tok = Tokenizer.from_preprocessing(ckpt["preprocessing"]["text"], ckpt["vocab"])
    return [tok.encode(t) for t in (ckpt["samples"] if texts is None else texts)]


def check_parity(ckpt: dict[str, Any], net: nn.Module, onnx_path: Path) -> float:
    """Max abs difference of logits, onnxruntime vs torch; raises ExportError past TOLERANCE."""
    net.eval()  # the exporter restores the wrapper's mode on the way out
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    worst = 0.0
    for batch in _sample_batches(ckpt):
        with torch.no_grad():
            expected = net(torch.from_numpy(batch)).numpy()
        got = sess.run(["logits"], {input_name: batch})[0]
        diff = float(np.abs(expected - got).max())
        worst = max(worst, diff)
        if diff > TOLERANCE:
            raise ExportError(f"onnxruntime differs from torch by {diff:.2e} at batch size {len(batch)}")
    if ckpt["kind"] == "text":
        worst = max(worst, check_padding_invariance(ckpt, sess))
    return worst


def check_padding_invariance(ckpt: dict[str, Any], sess: ort.InferenceSession) -> float:
    """Each sample text alone vs batched with longer texts: logits must agree within TOLERANCE."""
    ids = _encoded_samples(ckpt)
    pad_id = ckpt["preprocessing"]["text"]["pad_id"]
    batched = sess.run(["logits"], {"ids": pad_batch(ids, pad_id)})[0]
    worst = 0.0
    for i, seq in enumerate(ids):
        alone = sess.run(["logits"], {"ids": seq[None, :]})[0][0]
        diff = float(np.abs(alone - batched[i]).max())
        worst = max(worst, diff)
        if diff > TOLERANCE:
            raise ExportError(f"text model is not padding invariant: sample {i} differs by {diff:.2e}")
    return worst


MAX_INT8_DROP_POINTS = 0.5


def _test_set(ckpt: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint's test split as model inputs and labels (reloaded from its data source)."""
    from training.data import load_images, load_texts

    data = ckpt["data"]
    if ckpt["kind"] == "image":
        pre = ckpt["preprocessing"]["image"]
        spec = ImageSpec.from_preprocessing(pre)
        images = load_images(data["source"], spec, data["seed"]).test
        return images.images, images.labels
    texts = load_texts(data["source"], data["seed"]).test
    ids = _encoded_samples(ckpt, texts.texts)
    return pad_batch(ids, ckpt["preprocessing"]["text"]["pad_id"]), texts.labels


def quantize_int8(ckpt: dict[str, Any], fp32_path: Path, int8_path: Path) -> dict[str, Any]:
    """onnxruntime dynamic int8 quantisation (weights QInt8); fails past a 0.5-point accuracy drop.

    Dynamic quantisation scales activations per tensor, i.e. per batch: a row's answer can move with
    what it is batched with. The largest such move on the test split is measured and reported."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    x, y = _test_set(ckpt)
    input_name = "pixels" if ckpt["kind"] == "image" else "ids"
    accuracy, probs = {}, {}
    for label, path in (("fp32", fp32_path), ("int8", int8_path)):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        probs[label] = sess.run(["probabilities"], {input_name: x})[0]
        accuracy[label] = float((probs[label].argmax(1) == y).mean())
        if label == "int8":
            alone = np.concatenate(
                [sess.run(["probabilities"], {input_name: x[i : i + 1]})[0] for i in range(50)]
            )
            batch_shift = float(np.abs(alone - probs["int8"][:50]).max())
    drop = round((accuracy["fp32"] - accuracy["int8"]) * 100, 3)
    if drop > MAX_INT8_DROP_POINTS:
        raise ExportError(
            f"int8 quantisation drops test accuracy by {drop} points (limit {MAX_INT8_DROP_POINTS})"
        )
    return {
        "scheme": "onnxruntime dynamic int8 (QInt8 weights)",
        "accuracy_fp32": round(accuracy["fp32"], 5),
        "accuracy_int8": round(accuracy["int8"], 5),
        "drop_points": drop,
        "max_probability_shift_alone_vs_batched": round(batch_shift, 6),
        "size_fp32": fp32_path.stat().st_size,
        "size_int8": int8_path.stat().st_size,
    }


def export(
    checkpoint: Path, models_dir: Path, name: str, version: int | None = None, int8: bool = False
) -> Path:
    """Write models/<name>/<version>/ from a checkpoint; returns that folder. ``int8``: ship the
    dynamically quantised graph instead (checked: accuracy drop <= 0.5 points)."""
    ckpt, net = load_checkpoint(checkpoint)
    model_dir = models_dir / name
    version = version or next_version(model_dir)
    k = len(ckpt["classes"])
    if ckpt["kind"] == "image":
        pre = ckpt["preprocessing"]["image"]
        input_spec: dict[str, Any] = {
            "name": "pixels",
            "datatype": "UINT8",
            "shape": [-1, pre["height"], pre["width"], pre["channels"]],
        }
        dynamic = {"pixels": {0: "batch"}}
        dummy = torch.zeros((2, pre["height"], pre["width"], pre["channels"]), dtype=torch.uint8)
    else:
        input_spec = {"name": "ids", "datatype": "INT64", "shape": [-1, -1]}
        dynamic = {"ids": {0: "batch", 1: "sequence"}}
        dummy = torch.ones((2, 5), dtype=torch.int64)
    dynamic |= {"logits": {0: "batch"}, "probabilities": {0: "batch"}}

    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        onnx_path = staging / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and LSTM notes
            torch.onnx.export(
                _WithProbabilities(net).eval(),
                (dummy,),
                str(onnx_path),
                input_names=[input_spec["name"]],
                output_names=["logits", "probabilities"],
                dynamic_axes=dynamic,
                opset_version=OPSET,
                dynamo=False,
            )
        onnx.checker.check_model(onnx.load(str(onnx_path)), full_check=True)
        max_diff = check_parity(ckpt, net, onnx_path)
        log.info("%s v%d: onnxruntime parity %.2e (<= %.0e)", name, version, max_diff, TOLERANCE)
        quantized = None
        if int8:
            int8_path = staging / "model.int8.onnx"
            quantized = quantize_int8(ckpt, onnx_path, int8_path)
            int8_path.replace(onnx_path)
            log.info("%s v%d: int8 %s", name, version, quantized)
        meta = {
            "format": 1,
            "name": name,
            "version": version,
            "task": "classification",
            "input_kind": ckpt["kind"],
            "inputs": [input_spec],
            "outputs": [
                {"name": "logits", "datatype": "FP32", "shape": [-1, k]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, k]},
            ],
            "scores_output": "probabilities",
            "labels": ckpt["classes"],
            "preprocessing": ckpt["preprocessing"],
            "export": {
                "opset": OPSET,
                "parity_max_abs_diff": max_diff,
                "torch": torch.__version__,
                "quantization": quantized,
            },
            "training": ckpt["report"],
        }
        (staging / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        if ckpt["kind"] == "text":
            (staging / "vocab.txt").write_text("\n".join(ckpt["vocab"]) + "\n", encoding="utf-8")
        # Copy beside the target, then rename: a server polling the repository never sees half a version.
        target = model_dir / str(version)
        model_dir.mkdir(parents=True, exist_ok=True)
        partial = model_dir / f".{version}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(staging, partial)
        partial.chmod(0o755)  # the staging folder is private (0700); the repository is not
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
    config = model_dir / "config.json"
    if not config.exists():
        config.write_text(json.dumps({"max_batch_size": 64, "max_queue_delay_ms": 0}, indent=2) + "\n")
    return target
