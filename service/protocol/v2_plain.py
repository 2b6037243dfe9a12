"""The common V2 JSON request decoded in one pass: what most clients send, read without the general
codec's objects.

The plain case: a JSON body (no binary extension) that holds only ``inputs`` (and maybe ``id``); one
input per graph input, in the graph's order, each exactly ``name``, ``datatype``, ``shape`` and flat
``data``, with the graph's own datatype (a float or integer type, not BOOL or BYTES) and a shape the
graph takes. Such a request gets the same feeds, rows and id as ``decode_request`` + ``tensor_feeds``
would give it.

Anything else, valid or not, gives None, before any side effect, and the general decoder
(v2_codec.py, v2_feeds.py) takes the request from the parsed object: it owns every error message, so a request
answers the same whichever way it went. Why a second decoder: the general one builds a V2Input per
input, checks every field with its own message, and goes through the datatype and shape rules in
several steps; for a 784-float image that glue cost about as much as the JSON parse itself.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from service.protocol.v2_codec import V2Request

if TYPE_CHECKING:
    from service.repository.versions import ModelVersion
    from service.runtime import Feeds

# The datatypes read here, as the general decoder reads them: numpy casts JSON numbers to a float type;
# an integer type is taken when numpy infers INT64 on its own (every value an integer) and every value
# fits the type. BOOL and BYTES go the general way.
_FLOATS: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "FP16": np.dtype(np.float16),
}
_INTS: dict[str, np.dtype[Any]] = {
    name: np.dtype(t)
    for name, t in {
        "INT8": np.int8,
        "INT16": np.int16,
        "INT32": np.int32,
        "INT64": np.int64,
        "UINT8": np.uint8,
        "UINT16": np.uint16,
        "UINT32": np.uint32,
    }.items()
}
_INT64 = np.dtype(np.int64)


def plain_request(
    doc: dict[str, Any], mv: ModelVersion, max_rows: int
) -> tuple[V2Request, Feeds, int] | None:
    """(request, feeds, rows) for a plain request to ``mv`` (its JSON object, parsed once by the codec);
    None for anything else (the module says why)."""
    raw_inputs = doc.get("inputs")
    request_id = doc.get("id")
    specs = mv.inputs
    if (
        type(raw_inputs) is not list
        or len(raw_inputs) != len(specs)
        or len(doc) != (1 if request_id is None else 2)  # outputs, parameters, ...: the general way
    ):
        return None
    batchable = mv.model.batchable
    feeds: dict[str, np.ndarray] = {}
    rows = None
    for spec, raw in zip(specs, raw_inputs, strict=True):
        if type(raw) is not dict or len(raw) != 4 or raw.get("name") != spec.name:
            return None
        shape, data, datatype = raw.get("shape"), raw.get("data"), raw.get("datatype")
        if datatype != spec.datatype or type(shape) is not list or type(data) is not list:
            return None
        if len(shape) != len(spec.shape):
            return None
        for want, got in zip(spec.shape, shape, strict=True):
            if type(got) is not int or got < 0 or (want != -1 and want != got):
                return None
        arr = _array(data, datatype)
        if arr is None or arr.ndim != 1 or arr.size != math.prod(shape) or not arr.size:
            return None  # nested, ragged, a count the shape does not hold, or empty (its shape checked there)
        feeds[spec.name] = arr.reshape(shape)
        if batchable:
            if rows is not None and shape[0] != rows:
                return None
            rows = shape[0]
    rows = rows if rows is not None else 1
    if not 0 < rows <= max_rows:
        return None
    return V2Request([], None, None if request_id is None else str(request_id)), feeds, rows


def _array(data: list[Any], datatype: str) -> np.ndarray | None:
    try:
        floats = _FLOATS.get(datatype)
        if floats is not None:
            # The same values as np.asarray(data, dtype=floats) for a flat list, in half the time (no
            # dtype and shape discovery); a nested list raises here and goes the general way.
            return np.fromiter(data, dtype=floats, count=len(data))
        ints = _INTS.get(datatype)
        if ints is None:
            return None
        arr = np.asarray(data)
        if arr.dtype != _INT64:
            return None
        if ints == _INT64:
            return arr
        info = np.iinfo(ints)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            return None
        return arr.astype(ints)
    except (ValueError, TypeError, OverflowError):
        return None
