"""Open Inference Protocol over gRPC: ModelInferRequest in, the same V2Request the HTTP codec makes, and
the same output tensors out as a ModelInferResponse.

Inputs come as ``raw_input_contents`` (one entry per input, little-endian, BYTES length-prefixed: the
binary extension's layout) or as typed ``contents``. Outputs always go back as ``raw_output_contents``,
which is what Triton answers and what tritonclient and KServe's client read. Classification: an output's
``classification`` parameter (tritonclient's ``class_count``) answers BYTES ``score:index:label``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from service.errors import BadRequest, InvalidInput
from service.protocol.oip import grpc_service_pb2 as pb
from service.protocol.tensors import V2_TO_NUMPY
from service.protocol.v2_codec import (
    RequestedOutput,
    V2Input,
    V2Request,
    check_shape_size,
    from_binary,
)
from service.protocol.v2_encode import output_tensors, response_parameters

if TYPE_CHECKING:
    from service.repository.versions import ModelVersion
    from service.runtime import Feeds

# V2 datatype -> the InferTensorContents field that carries it (FP16 has none: raw only).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameter_value(p: pb.InferParameter) -> Any:
    choice = p.WhichOneof("parameter_choice")
    return None if choice is None else getattr(p, choice)


def set_parameter(p: pb.InferParameter, value: Any) -> None:
    if isinstance(value, bool):
        p.bool_param = value
    elif isinstance(value, int):
        p.int64_param = value
    elif isinstance(value, float):
        p.double_param = value
    else:
        p.string_param = str(value)


def decode_infer_request(msg: pb.ModelInferRequest) -> V2Request:
    """Parse a ModelInferRequest; 400 for anything malformed, 422 for data that does not fit its shape."""
    raw = msg.raw_input_contents
    if not msg.inputs:
        raise BadRequest("request: 'inputs' is empty")
    if raw and len(raw) != len(msg.inputs):
        raise BadRequest(
            f"raw_input_contents holds {len(raw)} entries for {len(msg.inputs)} inputs: give one per input"
        )
    inputs: list[V2Input] = []
    for i, tensor in enumerate(msg.inputs):
        name = tensor.name
        where = f"input {name!r}"
        if not name:
            raise BadRequest(f"input {i}: missing 'name'")
        if any(other.name == name for other in inputs):
            raise BadRequest(f"input {name!r} appears more than once")
        datatype = tensor.datatype.upper()
        if datatype not in V2_TO_NUMPY:
            raise BadRequest(f"{where}: unknown datatype {datatype!r} (one of {', '.join(V2_TO_NUMPY)})")
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape):
            raise BadRequest(f"{where}: shape must be non-negative integers, got {list(shape)}")
        check_shape_size(shape, where)
        count = math.prod(shape)
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"{where}: give raw_input_contents or contents, not both")
            value = from_binary(memoryview(raw[i]), datatype, count, where)
        else:
            value = _from_contents(tensor.contents, datatype, count, where)
        # binary: BYTES elements are the bytes themselves (encoded images raw, not base64).
        inputs.append(V2Input(name, datatype, shape, value, binary=True))
    outputs = [_requested_output(o) for o in msg.outputs] or None
    params = {k: parameter_value(v) for k, v in msg.parameters.items()}
    return V2Request(inputs, outputs, msg.id or None, params)


def _requested_output(o: pb.ModelInferRequest.InferRequestedOutputTensor) -> RequestedOutput:
    k = 0
    if "classification" in o.parameters:
        k = parameter_value(o.parameters["classification"])
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise BadRequest(f"output {o.name}: 'classification' must be a non-negative integer")
    return RequestedOutput(o.name, None, k)


def _from_contents(
    contents: pb.InferTensorContents, datatype: str, count: int, where: str
) -> np.ndarray | list[bytes]:
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        raise BadRequest(f"{where}: {datatype} travels only as raw_input_contents")
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(f"{where}: shape holds {count} elements, contents has {len(values)}")
    if datatype == "BYTES":
        return list(values)
    dtype = V2_TO_NUMPY[datatype]
    wide = np.array(values, dtype=np.float64 if dtype.kind == "f" else None)
    if dtype.kind in "iu" and wide.size:
        info = np.iinfo(dtype)
        if int(wide.min()) < info.min or int(wide.max()) > info.max:
            raise InvalidInput(f"{where}: values out of range for {datatype}")
    return wide.astype(dtype, copy=False)


def encode_infer_response(mv: ModelVersion, request: V2Request, outputs: Feeds) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=mv.name, model_version=str(mv.version), id=request.id or "")
    for out in output_tensors(mv, request, outputs):
        response.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        response.raw_output_contents.append(out.raw())
    for key, value in response_parameters(request).items():
        set_parameter(response.parameters[key], value)
    return response


class GrpcCodec:
    """V2 over gRPC for the data plane: a ModelInferRequest in, a ModelInferResponse out."""

    encode = staticmethod(encode_infer_response)

    @staticmethod
    def read(mv: ModelVersion, payload: pb.ModelInferRequest, max_rows: int) -> V2Request:
        """Always the general decoder: raw_input_contents are already read without copies."""
        return decode_infer_request(payload)


GRPC = GrpcCodec()
