"""Export a checkpoint to the model repository: models/<name>/<version>/{model.onnx, model.json}.

    modelserve export --checkpoint runs/digits/checkpoint.pt --name digits --version 1

torch.onnx.export with a dynamic batch axis (and sequence axis for text), onnx.checker, then onnxruntime
against torch on real inputs at batch sizes 1 and 7, plus the kind's own checks (text: padding
invariance). Any difference above 1e-4 fails the export. What differs per kind (the graph input, sample
inputs, the test split, files beside the graph) is the kind's, in training/kinds/.
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

from service import kinds as service_kinds
from service.repository.model_files import ExportInfo, ModelMeta, TensorDecl
from training import kinds
from training.kinds import TOLERANCE, ExportError, TrainingKind

__all__ = ["TOLERANCE", "ExportError", "check_parity", "export", "load_checkpoint", "quantize_int8"]
log = logging.getLogger(__name__)
OPSET = 17


class _WithProbabilities(nn.Module):
    """The classifier as served: its graph inputs -> (logits, probabilities)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(*inputs)  # (B, K)
        return logits, torch.softmax(logits, dim=1)


def write_graph(
    net: nn.Module,
    inputs: dict[str, np.ndarray],
    path: Path,
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """torch.onnx.export of ``net`` (its ``inputs`` by graph input name, in call order; their dynamic
    axes) with outputs ``logits`` and ``probabilities`` (dynamic batch), then onnx.checker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation, LSTM and tracing notes
        torch.onnx.export(
            _WithProbabilities(net).eval(),
            tuple(torch.from_numpy(array) for array in inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=["logits", "probabilities"],
            dynamic_axes={**dynamic_axes, "logits": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def _kind(ckpt: dict[str, Any]) -> TrainingKind:
    """The checkpoint's kind, trainable here and servable (else an UnknownKind naming those that are)."""
    service_kinds.get_kind(ckpt["kind"])
    return kinds.get(ckpt["kind"])


def load_checkpoint(path: Path) -> tuple[dict[str, Any], nn.Module]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    net = _kind(ckpt).build_net(ckpt["net_config"])
    net.load_state_dict(ckpt["state_dict"])
    return ckpt, net.eval()


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def check_parity(ckpt: dict[str, Any], net: nn.Module, onnx_path: Path) -> float:
    """Max abs difference of logits, onnxruntime vs torch; raises ExportError past TOLERANCE."""
    kind = _kind(ckpt)
    net.eval()  # the exporter restores the wrapper's mode on the way out
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    worst = 0.0
    for batch in kind.sample_batches(ckpt):
        with torch.no_grad():
            expected = net(torch.from_numpy(batch)).numpy()
        got = sess.run(["logits"], {input_name: batch})[0]
        diff = float(np.abs(expected - got).max())
        worst = max(worst, diff)
        if diff > TOLERANCE:
            raise ExportError(f"onnxruntime differs from torch by {diff:.2e} at batch size {len(batch)}")
    return max(worst, kind.check_invariance(ckpt, sess))


MAX_INT8_DROP_POINTS = 0.5


def quantize_int8(ckpt: dict[str, Any], fp32_path: Path, int8_path: Path) -> dict[str, Any]:
    """onnxruntime dynamic int8 quantisation (weights QInt8); fails past a 0.5-point accuracy drop.

    Dynamic quantisation scales activations per tensor, i.e. per batch: a row's answer can move with
    what it is batched with. The largest such move on the test split is measured and reported."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    x, y = _kind(ckpt).test_set(ckpt)
    input_name = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
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
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    kind = _kind(ckpt)
    own = kind.export(checkpoint, models_dir, name, version, int8)
    if own is not None:  # a kind with its own export (several graph inputs: training/kinds/subword/export.py)
        return own
    net = kind.build_net(ckpt["net_config"])
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    model_dir = models_dir / name
    version = version or next_version(model_dir)
    graph_input = kind.graph_input(ckpt)
    input_name = graph_input.decl.name

    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        onnx_path = staging / "model.onnx"
        write_graph(net, {input_name: graph_input.dummy}, onnx_path, {input_name: graph_input.dynamic_axes})
        max_diff = check_parity(ckpt, net, onnx_path)
        log.info("%s v%d: onnxruntime parity %.2e (<= %.0e)", name, version, max_diff, TOLERANCE)
        quantized = None
        if int8:
            int8_path = staging / "model.int8.onnx"
            quantized = quantize_int8(ckpt, onnx_path, int8_path)
            int8_path.replace(onnx_path)
            log.info("%s v%d: int8 %s", name, version, quantized)
        classifier_meta(ckpt, name, version, ckpt["kind"], [graph_input.decl], max_diff, quantized).write(
            staging
        )
        for filename, content in kind.extra_files(ckpt).items():
            (staging / filename).write_text(content, encoding="utf-8")
        return install_version(staging, model_dir, version)


def classifier_meta(
    ckpt: dict[str, Any],
    name: str,
    version: int,
    input_kind: str,
    inputs: list[TensorDecl],
    max_diff: float,
    quantized: dict[str, Any] | None,
) -> ModelMeta:
    """model.json of an exported classifier: its inputs, logits and probabilities (k classes), the labels,
    preprocessing and training report from the checkpoint, and how it was exported."""
    k = len(ckpt["classes"])
    return ModelMeta(
        name=name,
        version=version,
        input_kind=input_kind,
        inputs=inputs,
        outputs=[
            TensorDecl(name="logits", datatype="FP32", shape=[-1, k]),
            TensorDecl(name="probabilities", datatype="FP32", shape=[-1, k]),
        ],
        scores_output="probabilities",
        labels=ckpt["classes"],
        preprocessing=ckpt["preprocessing"],
        export=ExportInfo(
            opset=OPSET, parity_max_abs_diff=max_diff, torch=torch.__version__, quantization=quantized
        ),
        training=ckpt["report"],
    )


def install_version(staging: Path, model_dir: Path, version: int) -> Path:
    """Copy a finished version folder into the repository (and a default config.json beside it)."""
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
