"""Tiny real ONNX graphs built with onnx.helper, for repository and protocol tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path / "model.onnx"))
    return path


def affine_model(
    path: Path, scale: float = 2.0, shift: float = 1.0, width: int = 4, batch: int | str = "batch"
) -> Path:
    """y = x * scale + shift on FP32 x of shape (batch, width); writes path/model.onnx only (no metadata)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["y"]),
    ]
    inits = [
        helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
        helper.make_tensor("shift", TensorProto.FLOAT, [], [shift]),
    ]
    return _save(helper.make_graph(nodes, "affine", [x], [y], inits), path)


def copy_shipped(name: str, dest_root: Path, version: int = 1, as_version: int | None = None) -> Path:
    """Copy models/<name>/<version> (and config.json) into another repository."""
    src = ROOT / "models" / name
    dest = dest_root / name
    dest.mkdir(parents=True, exist_ok=True)
    if (src / "config.json").exists():
        shutil.copy(src / "config.json", dest / "config.json")
    target = dest / str(as_version or version)
    shutil.copytree(src / str(version), target, dirs_exist_ok=True)
    return target


def write_config(model_dir: Path, **knobs: object) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(knobs))


def slow_model(path: Path, matmuls: int = 4, size: int = 768) -> Path:
    """A tensor model that takes a while whatever the batch: y = x + mean(W' @ W @ ... ), W' scaled by sum(x).

    Every product depends on the input, so onnxruntime cannot fold it away; each costs size**3 multiply-adds.
    """
    import numpy as np

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    w = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32) / size
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Mul", ["w", "s"], ["m0"]),
    ]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"m{i}", "w"], [f"m{i + 1}"]))
    nodes += [
        helper.make_node("ReduceMean", [f"m{matmuls}"], ["mean"], keepdims=0),
        helper.make_node("Add", ["x", "mean"], ["y"]),
    ]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [size, size], w.ravel().tolist())]
    return _save(helper.make_graph(nodes, "slow", [x], [y], inits), path)


ECHO_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def echo_model(path: Path) -> Path:
    """One input per V2 datatype, each (batch, 3), echoed by Identity to out_<TYPE>: a codec round trip."""
    inputs, outputs, nodes = [], [], []
    for name, proto in ECHO_TYPES.items():
        inputs.append(helper.make_tensor_value_info(f"in_{name}", proto, ["batch", 3]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", proto, ["batch", 3]))
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
    return _save(helper.make_graph(nodes, "echo", inputs, outputs), path)
