"""Tiny real ONNX graphs built with onnx.helper, for repository and protocol tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent


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
    graph = helper.make_graph(nodes, "affine", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path / "model.onnx"))
    return path


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
