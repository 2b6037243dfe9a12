"""A V2 answer: the model's outputs as JSON tensors, or binary ones after a JSON header (the binary tensor
extension), and the classification extension's ``"score:index:label"`` strings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from service.errors import InvalidInput
from service.protocol.predict_codec import ranked
from service.protocol.tensors import NUMPY_TO_V2, pack_bytes
from service.protocol.v2_codec import (
    RESERVED,
    RequestedOutput,
    V2Request,
    decode_document,
    decode_request,
    may_hold_boolean,
    parse_header,
)
from service.protocol.v2_plain import plain_request

if TYPE_CHECKING:
    from service.repository.versions import ModelVersion
    from service.runtime import Feeds


@dataclass
class OutputTensor:
    """One answered output, transport-neutral: HTTP writes it as JSON or binary, gRPC as raw contents."""

    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray | list[str]  # numbers, or BYTES elements as text
    binary: bool | None  # what the request asked (None: the request's default)

    def raw(self) -> bytes:
        """Binary form: numbers little-endian, BYTES elements length-prefixed."""
        if isinstance(self.values, list):
            return pack_bytes(s.encode() for s in self.values)
        arr = self.values
        return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()

    def flat(self) -> Any:
        """JSON form: a flat list (FP16 as Python floats: orjson takes no float16 arrays)."""
        if isinstance(self.values, list) or self.datatype != "FP16":
            return self.values if isinstance(self.values, list) else self.values.ravel()
        return self.values.ravel().tolist()


def output_tensors(mv: ModelVersion, request: V2Request, outputs: Feeds) -> list[OutputTensor]:
    """The outputs the request asked for (default: all), classification applied."""
    wanted = request.outputs or [RequestedOutput(o.name) for o in mv.outputs]
    tensors: list[OutputTensor] = []
    for out in wanted:
        if out.name not in outputs:
            raise InvalidInput(f"model {mv.name!r} has no output {out.name!r}; outputs: {', '.join(outputs)}")
        arr = outputs[out.name]
        if out.classification:
            rows = classify(mv, arr, out.classification)
            shape = [len(rows), len(rows[0]) if rows else 0]
            tensors.append(
                OutputTensor(out.name, "BYTES", shape, [s for row in rows for s in row], out.binary)
            )
            continue
        datatype = NUMPY_TO_V2.get(arr.dtype, "BYTES")
        values: np.ndarray | list[str] = arr
        if datatype == "BYTES":
            values = [x.decode() if isinstance(x, bytes) else str(x) for x in arr.ravel().tolist()]
        tensors.append(OutputTensor(out.name, datatype, list(arr.shape), values, out.binary))
    return tensors


def response_parameters(request: V2Request) -> dict[str, Any]:
    """Request parameters echoed in the response (the binary-output switch is ours, not the caller's)."""
    return {k: v for k, v in request.parameters.items() if k not in RESERVED}


def encode_response(mv: ModelVersion, request: V2Request, outputs: Feeds) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (binary when any output asked for it)."""
    if request.outputs is None and not request.binary_output and not request.parameters:
        plain = _plain_response(mv, request, outputs)
        if plain is not None:
            return plain, JSON_HEADERS
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in output_tensors(mv, request, outputs):
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": out.shape}
        if out.binary if out.binary is not None else request.binary_output:
            blob = out.raw()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = out.flat()
        tensors.append(entry)
    doc: dict[str, Any] = {"model_name": mv.name, "model_version": str(mv.version), "outputs": tensors}
    if request.id is not None:
        doc["id"] = request.id
    params = response_parameters(request)
    if params:
        doc["parameters"] = params
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


def classify(mv: ModelVersion, scores: np.ndarray, k: int) -> list[list[str]]:
    """Triton's classification strings, the k best per row: "score:index[:label]"."""
    if scores.ndim == 1:
        scores = scores[None, :]
    labels = mv.meta.labels
    rows = []
    for row, idx in ranked(scores.reshape(scores.shape[0], -1), k):
        rows.append([f"{row[i]:f}:{i}:{labels[i]}" if i < len(labels) else f"{row[i]:f}:{i}" for i in idx])
    return rows


# The headers of every JSON answer (one object: the direct path renders its line once, by identity).
JSON_HEADERS = {"content-type": "application/json"}


def _plain_response(mv: ModelVersion, request: V2Request, outputs: Feeds) -> bytes | None:
    """What ``encode_response`` writes for a request that named no outputs and no parameters, when every
    output is a number type JSON takes as it is (not FP16, not strings); None otherwise."""
    tensors = []
    for spec in mv.outputs:
        arr = outputs.get(spec.name)
        if arr is None:
            return None
        datatype = NUMPY_TO_V2.get(arr.dtype)
        if datatype is None or datatype in ("BYTES", "FP16"):
            return None
        tensors.append(
            {"name": spec.name, "datatype": datatype, "shape": list(arr.shape), "data": arr.ravel()}
        )
    doc: dict[str, Any] = {"model_name": mv.name, "model_version": str(mv.version), "outputs": tensors}
    if request.id is not None:
        doc["id"] = request.id
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


class HttpCodec:
    """V2 over HTTP for the data plane: (body, Inference-Header-Content-Length) in, (body, headers) out."""

    @staticmethod
    def read(
        mv: ModelVersion, payload: tuple[bytes, str | None], max_rows: int
    ) -> V2Request | tuple[V2Request, Feeds, int]:
        """The JSON parsed once: the common request as its feeds in one pass (v2_plain.py), else the
        V2Request the general decoder makes of it (binary tensors: always the general decoder)."""
        body, header_length = payload
        if header_length is not None:
            return decode_request(body, header_length)
        doc = parse_header(body)
        booleans = may_hold_boolean(body)  # then not the plain case: the general decoder refuses them
        plain = None if booleans else plain_request(doc, mv, max_rows)
        return plain if plain is not None else decode_document(doc, memoryview(b""), booleans)

    encode = staticmethod(encode_response)


HTTP = HttpCodec()
