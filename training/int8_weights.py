"""int8 weight storage for an ONNX graph, computed in fp32: a small file with fp32's answers.

Each large fp32 weight a MatMul, Gemm or Gather reads (the embedding table, every dense layer) is stored
as int8 with one fp32 scale per output channel (per row for a Gather table: symmetric, scale =
max|w| / 127), followed by ``Cast`` to float and ``Mul`` by the scales. The session's constant folding
turns those back into fp32 weights at load, so inference runs exactly the fp32 kernels on weights
rounded to 8 bits: about a quarter of the file, no activation quantisation, and a row's answer does not
depend on the rows it is batched with (onnxruntime's dynamic int8 scales activations per batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Smaller tensors (biases, LayerNorm, the classifier head) stay fp32: they weigh nothing.
MIN_ELEMENTS = 16384
_OPS = {"MatMul": 1, "Gemm": 1, "Gather": 0}  # op -> which input is the weight


def int8_weights(src: Path, dst: Path, min_elements: int = MIN_ELEMENTS) -> dict[str, Any]:
    """Rewrite ``src`` into ``dst`` with int8-stored weights; what was converted, and the sizes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    users: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            users.setdefault(name, []).append((node, i))
    converted, new_nodes = [], []
    for name, tensor in list(inits.items()):
        uses = users.get(name, [])
        if tensor.data_type != TensorProto.FLOAT or not uses:
            continue
        if not all(node.op_type in _OPS and _OPS[node.op_type] == i for node, i in uses):
            continue
        w = numpy_helper.to_array(tensor)
        if w.ndim != 2 or w.size < min_elements:
            continue
        gemm_transposed = any(n.op_type == "Gemm" and _attr(n, "transB") for n, _ in uses)
        # The output channel: a Gather table's rows; a MatMul (in, out) weight's columns; Gemm's per transB.
        axis = 0 if uses[0][0].op_type == "Gather" or gemm_transposed else 1
        peak = np.abs(w).max(axis=1 - axis, keepdims=True)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        graph.initializer.remove(tensor)
        graph.initializer.extend(
            [numpy_helper.from_array(q, f"{name}_int8"), numpy_helper.from_array(scale, f"{name}_scale")]
        )
        new_nodes += [
            helper.make_node(
                "Cast", [f"{name}_int8"], [f"{name}_cast"], to=TensorProto.FLOAT, name=f"{name}_Cast"
            ),
            helper.make_node("Mul", [f"{name}_cast", f"{name}_scale"], [name], name=f"{name}_Dequantize"),
        ]
        converted.append({"name": name, "shape": list(w.shape), "axis": axis})
    # The new nodes read only initializers, so they go first: the graph stays topologically sorted.
    nodes = new_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return {
        "scheme": "int8 weights (symmetric, per output channel; Gather tables per row), fp32 compute",
        "tensors": len(converted),
        "elements": int(sum(np.prod(c["shape"]) for c in converted)),
        "size_fp32": src.stat().st_size,
        "size_int8": dst.stat().st_size,
    }


def _attr(node: Any, name: str) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), 0)
