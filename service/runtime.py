"""The Runtime protocol (what an engine offers the service) and OnnxModel: one onnxruntime InferenceSession,
its I/O metadata, warm-up, and runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from service.protocol.tensors import V2_TO_NUMPY

# onnxruntime type string -> V2 datatype (V2 -> numpy is in service/protocol/tensors.py).
_ORT_TO_V2 = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: V2 datatype and shape, -1 for a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return V2_TO_NUMPY[self.datatype]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Runtime(Protocol):
    """What the repository, the batcher and the data plane need from an engine; OnnxModel is the first.

    ``platform``/``backend`` are what V2 metadata and Triton's model configuration report."""

    platform: str
    backend: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    output_names: list[str]
    batchable: bool  # every input and output has a dynamic leading axis
    pad_values: dict[str, int]  # inputs whose rows may differ in length, and their padding value

    def run(self, feeds: Feeds) -> Feeds: ...
    def warm_up(self) -> None: ...


def _spec(arg: ort.NodeArg) -> TensorSpec:
    dims = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(arg.name, _ORT_TO_V2.get(arg.type, arg.type), dims)


def resolve_providers(requested: list[str]) -> list[str]:
    available = ort.get_available_providers()
    if requested in (["auto"], []):
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    missing = [p for p in requested if p not in available]
    if missing:
        raise ValueError(f"execution providers {missing} are not available (have {available})")
    return requested


class OnnxModel:
    """An ONNX graph ready to run: one joined batch per ``run`` (service/collate.py assembles it)."""

    platform = "onnxruntime_onnx"  # V2 metadata's platform and Triton's model configuration
    backend = "onnxruntime"

    def __init__(
        self,
        path: Path,
        *,
        providers: list[str],
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        optimization: str = "all",
        spin_wait: bool = False,
    ) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.graph_optimization_level = _OPT_LEVELS[optimization]
        if not spin_wait:
            # Idle pool threads would otherwise spin for work and take the event loop's core.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=resolve_providers(providers)
        )
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]
        self.output_names = [o.name for o in self.outputs]
        # Batching needs a dynamic leading axis on every input and output.
        self.batchable = all(t.shape and t.shape[0] == -1 for t in (*self.inputs, *self.outputs))
        # Inputs whose rows may differ in length (token ids), with the value that right-pads them.
        self.pad_values: dict[str, int] = {}

    def run(self, feeds: Feeds) -> Feeds:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))

    def warm_up(self) -> None:
        """One run on zeros (dynamic dimensions as 1), so the first request does not pay for setup."""
        feeds = {
            t.name: np.zeros(tuple(d if d > 0 else 1 for d in t.shape), dtype=t.dtype)
            for t in self.inputs
            if t.datatype != "BYTES"
        }
        if len(feeds) == len(self.inputs):
            self.run(feeds)
