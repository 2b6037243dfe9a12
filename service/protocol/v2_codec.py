"""Open Inference Protocol (KServe V2) codec, decoding: JSON and binary tensors in (v2_feeds.py checks them
against the graph, v2_encode.py writes the answer).

Binary tensor extension (Triton's): with an ``Inference-Header-Content-Length: N`` header, the first N
bytes of the body are the JSON header and the rest holds, in input order, the raw data of each input
that has ``parameters.binary_data_size``. BYTES elements are each a 4-byte little-endian length and the
bytes. Outputs come back the same way when asked (``binary_data`` per output, or the request parameter
``binary_data_output``). Classification extension: an output asked with ``classification: k`` answers
BYTES ``"score:index:label"``, the k best per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from service.errors import BadRequest, InvalidInput
from service.protocol.tensors import V2_TO_NUMPY, unpack_bytes

if TYPE_CHECKING:
    from collections.abc import Sequence

_INT_KINDS = "iub"
RESERVED = {"binary_data_output"}


@dataclass
class V2Input:
    name: str
    datatype: str
    shape: tuple[int, ...]
    value: np.ndarray | list[bytes]  # numeric array, or BYTES elements (flat)
    binary: bool = False  # came as binary data (BYTES images are then raw, not base64)


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None
    classification: int = 0


@dataclass
class V2Request:
    inputs: list[V2Input]
    outputs: list[RequestedOutput] | None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    binary_output: bool = False


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise BadRequest(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise BadRequest(f"{where}: {key!r} has the wrong type")
    return value


def parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """An object's optional "parameters", which must be an object (400 otherwise)."""
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadRequest(f"{where}: 'parameters' must be an object")
    return params


def may_hold_boolean(text: bytes) -> bool:
    """Whether JSON ``text`` may hold ``true`` or ``false`` (in a number tensor they are refused, where
    numpy would take them as 1 and 0). The common body (keys inputs, name, datatype, shape, data; numbers)
    holds neither an ``r`` nor an ``f``: two memchr scans, ~0.2 µs for a 784-number image, where a search
    for the words takes ~6. A body that holds one of the letters is searched for the words."""
    if text.find(b"r") < 0 and text.find(b"f") < 0:
        return False
    return b"true" in text or b"false" in text


def decode_request(body: bytes, header_length: str | None) -> V2Request:
    """Parse a V2 infer request (JSON, or JSON + binary); 400 for anything malformed."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise BadRequest(f"invalid Inference-Header-Content-Length {header_length!r}") from None
        if not 0 < n <= len(body):
            raise BadRequest(f"Inference-Header-Content-Length {n} does not fit a {len(body)}-byte body")
        header, binary = body[:n], memoryview(body)[n:]
        doc = parse_header(header, "the inference header")
        return decode_document(doc, binary, may_hold_boolean(header))
    return decode_document(parse_header(body), memoryview(b""), may_hold_boolean(body))


def parse_header(header: bytes, what: str = "the request body") -> dict[str, Any]:
    """The request's JSON object (the whole body, or with binary tensors the inference header before
    them); 400 when it is empty, not JSON, or not an object."""
    if not header:
        raise BadRequest("the request body is empty")
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"{what} is not valid JSON (line {e.lineno}, column {e.colno})") from None
    if not isinstance(doc, dict):
        raise BadRequest("the inference request must be a JSON object")
    return doc


def decode_document(doc: dict[str, Any], binary: memoryview, booleans: bool = True) -> V2Request:
    """A parsed inference header (and the binary data after it) as a V2Request; 400 for anything malformed.
    ``booleans``: the JSON may hold true or false (``may_hold_boolean``), so number tensors are checked."""
    raw_inputs = _field(doc, "inputs", list, "request")
    if not raw_inputs:
        raise BadRequest("request: 'inputs' is empty")
    offset = 0
    inputs: list[V2Input] = []
    for i, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict):
            raise BadRequest(f"input {i}: must be an object")
        item, offset = _decode_input(raw, binary, offset, booleans)
        if any(other.name == item.name for other in inputs):
            raise BadRequest(f"input {item.name!r} appears more than once")
        inputs.append(item)
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data belong to no input")
    params = parameters(doc, "request")
    outputs = None
    if doc.get("outputs") is not None:
        outputs = [_decode_output(o, i) for i, o in enumerate(_field(doc, "outputs", list, "request"))]
    request_id = doc.get("id")
    return V2Request(
        inputs,
        outputs,
        None if request_id is None else str(request_id),
        params,
        bool(params.get("binary_data_output", False)),
    )


def _decode_output(raw: Any, i: int) -> RequestedOutput:
    if not isinstance(raw, dict):
        raise BadRequest(f"output {i}: must be an object")
    name = _field(raw, "name", str, f"output {i}")
    params = parameters(raw, f"output {name}")
    k = params.get("classification", 0)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise BadRequest(f"output {name}: 'classification' must be a non-negative integer")
    binary = params.get("binary_data")
    return RequestedOutput(name, None if binary is None else bool(binary), k)


# numpy refuses an array of more than 64 dimensions, or one whose dimensions other than 0 multiply past its
# index range, even when a 0 dimension leaves it empty ([0, 2**62]): such shapes are refused before any
# array is made. The limits are far past any body the server takes.
MAX_RANK = 32
MAX_EXTENT = 2**40


def check_shape_size(shape: Sequence[int], where: str) -> None:
    """InvalidInput for a shape numpy cannot make an array of, whatever its data."""
    if len(shape) > MAX_RANK or math.prod(d for d in shape if d) > MAX_EXTENT:
        raise InvalidInput(
            f"{where}: shape {list(shape)} is too large (at most {MAX_RANK} dimensions, whose non-zero "
            "ones multiply to at most 2**40)"
        )


def _decode_input(
    raw: dict[str, Any], binary: memoryview, offset: int, booleans: bool
) -> tuple[V2Input, int]:
    name = _field(raw, "name", str, "input")
    where = f"input {name!r}"
    datatype = _field(raw, "datatype", str, where).upper()
    if datatype not in V2_TO_NUMPY:
        raise BadRequest(f"{where}: unknown datatype {datatype!r} (one of {', '.join(V2_TO_NUMPY)})")
    shape = _field(raw, "shape", list, where)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadRequest(f"{where}: shape must be a list of non-negative integers, got {shape}")
    check_shape_size(shape, where)
    count = math.prod(shape)
    size = parameters(raw, where).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise BadRequest(
                f"{where}: binary_data_size {size} runs past the {len(binary)} bytes of binary data"
            )
        chunk = binary[offset : offset + size]
        value = from_binary(chunk, datatype, count, where)
        return V2Input(name, datatype, tuple(shape), value, binary=True), offset + size
    if "data" not in raw:
        raise BadRequest(f"{where}: needs 'data' or parameters.binary_data_size")
    data = raw["data"]
    if booleans and datatype not in ("BOOL", "BYTES") and _holds_boolean(data, len(shape)):
        raise InvalidInput(f"{where}: {datatype} data holds true or false, which are not numbers")
    return V2Input(name, datatype, tuple(shape), _from_json(data, datatype, shape, count, where)), offset


def _holds_boolean(data: Any, ndim: int) -> bool:
    """Whether ``data`` holds a JSON true or false, down to the shape's depth (numpy refuses deeper
    lists); level by level, no recursion to exhaust on data nested a thousand deep."""
    level = [data]
    for _ in range(max(ndim, 1) + 1):
        nested: list[Any] = []
        for x in level:
            if type(x) is bool:
                return True
            if type(x) is list:
                nested += x
        if not nested:
            return False
        level = nested
    return False


def from_binary(chunk: memoryview, datatype: str, count: int, where: str) -> np.ndarray | list[bytes]:
    """One input's raw data (binary extension, gRPC raw_input_contents): numbers little-endian, BYTES framed."""
    if datatype == "BYTES":
        try:
            items = unpack_bytes(chunk.tobytes())
        except ValueError as e:
            raise BadRequest(f"{where}: {e}") from None
        if len(items) != count:
            raise InvalidInput(f"{where}: shape holds {count} elements, binary data holds {len(items)}")
        return items
    dtype = V2_TO_NUMPY[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise InvalidInput(
            f"{where}: shape needs {count * dtype.itemsize} bytes of {datatype}, got {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)


def _from_json(
    data: Any, datatype: str, shape: list[int], count: int, where: str
) -> np.ndarray | list[bytes]:
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat = _flatten(data, len(shape), where)
        if len(flat) != count:
            raise InvalidInput(f"{where}: shape {shape} holds {count} elements, data has {len(flat)}")
        return [_as_bytes(x, where) for x in flat]
    _check_depth(data, len(shape), where)
    dtype = V2_TO_NUMPY[datatype]
    try:
        if dtype.kind in _INT_KINDS:
            # Inferred first, to refuse 1.5 or true for an integer and 3 for a BOOL (numpy would cast).
            inferred = np.asarray(data)
            kind = inferred.dtype.kind
            if inferred.size and (kind not in "iubf" or (dtype.kind == "b") != (kind == "b")):
                raise InvalidInput(
                    f"{where}: {datatype} data holds values of another type ({inferred.dtype})"
                )
            if inferred.dtype == dtype:
                arr = inferred  # numpy chose the type asked for (INT64 ids, the usual case): all fit
            elif kind in "iu" and dtype.kind in "iu":
                # One pass over the Python list, not two: range-check the inferred array and cast it.
                info = np.iinfo(dtype)
                if inferred.size and (inferred.min() < info.min or inferred.max() > info.max):
                    raise OverflowError
                arr = inferred.astype(dtype)
            else:
                arr = np.asarray(data, dtype=dtype)  # OverflowError when a value does not fit
            if kind == "f" and not np.array_equal(arr.astype(np.float64), inferred):
                raise InvalidInput(f"{where}: {datatype} data holds values of another type (non-integers)")
        else:
            arr = np.asarray(data, dtype=dtype)
    except OverflowError:
        raise InvalidInput(f"{where}: values out of range for {datatype}") from None
    except (ValueError, TypeError):
        raise InvalidInput(
            f"{where}: data does not fit {datatype} {shape} (ragged nesting or values of another type)"
        ) from None
    if arr.size != count:
        raise InvalidInput(f"{where}: shape {shape} holds {count} elements, data has {arr.size}")
    return arr.reshape(shape)


def _too_deep(ndim: int, where: str) -> BadRequest:
    return BadRequest(f"{where}: data is nested deeper than its shape's {ndim} dimensions")


def _check_depth(data: list[Any], ndim: int, where: str) -> None:
    """Nesting no deeper than the shape, along the first elements (numpy refuses ragged data itself)."""
    depth, x = 0, data
    while isinstance(x, list):
        depth += 1
        if depth > max(ndim, 1):
            raise _too_deep(ndim, where)
        if not x:
            return
        x = x[0]


def _flatten(data: list[Any], ndim: int, where: str) -> list[Any]:
    """Row-major leaves of nested lists no deeper than ``ndim``; iterative (no recursion to exhaust)."""
    out: list[Any] = []
    stack = [iter(data)]
    limit = max(ndim, 1)
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                if len(stack) >= limit:
                    raise _too_deep(ndim, where)
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out


def _as_bytes(x: Any, where: str) -> bytes:
    if isinstance(x, str):
        return x.encode("utf-8")
    raise InvalidInput(f"{where}: BYTES data must be strings")
