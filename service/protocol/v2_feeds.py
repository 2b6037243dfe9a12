"""A decoded V2 request checked against the model's graph: the tensors become its feeds (422 with the
reason for a wrong name, shape or datatype), or a lone BYTES input goes to the model's kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from service.errors import InvalidInput, PayloadTooLarge
from service.protocol.v2_codec import V2Input, V2Request

if TYPE_CHECKING:
    from service.repository.versions import ModelVersion
    from service.runtime import Feeds, TensorSpec


def raw_bytes_input(request: V2Request) -> V2Input | None:
    """A lone BYTES input: encoded images, strings, ... for a kind's own preprocessing (the model's kind
    decides, ``InputKind.from_v2_bytes``), if that is what came."""
    if len(request.inputs) != 1 or request.inputs[0].datatype != "BYTES":
        return None
    return request.inputs[0]


def tensor_feeds(mv: ModelVersion, request: V2Request, max_rows: int) -> tuple[Feeds, int]:
    """Check the tensors against the model's inputs (422 with the reason); (feeds, rows)."""
    given = {t.name: t for t in request.inputs}
    expected = {t.name: t for t in mv.inputs}
    unknown = sorted(given.keys() - expected.keys())
    if unknown:
        raise InvalidInput(
            f"model {mv.name!r} has no input {', '.join(unknown)}; inputs: {', '.join(expected)}"
        )
    missing = sorted(expected.keys() - given.keys())
    if missing:
        raise InvalidInput(f"model {mv.name!r} needs input {', '.join(missing)}")
    feeds: Feeds = {}
    rows = None
    for name, spec in expected.items():
        tensor = given[name]
        _check_shape(spec, tensor)
        arr = _convert(spec, tensor)
        feeds[name] = arr
        if mv.model.batchable:
            if rows is not None and arr.shape[0] != rows:
                raise InvalidInput(f"inputs disagree on the batch size: {rows} and {arr.shape[0]} ({name})")
            rows = arr.shape[0]
    rows = rows if rows is not None else 1
    if rows == 0:
        raise InvalidInput("the batch is empty (first dimension 0)")
    if rows > max_rows:
        raise PayloadTooLarge(f"the request holds {rows} rows; the limit is {max_rows}")
    return feeds, rows


def _check_shape(spec: TensorSpec, tensor: V2Input) -> None:
    same_rank = len(spec.shape) == len(tensor.shape)
    if not same_rank or any(e not in (-1, g) for e, g in zip(spec.shape, tensor.shape, strict=True)):
        want = "[" + ", ".join("-1" if d == -1 else str(d) for d in spec.shape) + "]"
        raise InvalidInput(
            f"input {spec.name!r}: shape {list(tensor.shape)} does not match the model's {want}"
        )


def _convert(spec: TensorSpec, tensor: V2Input) -> np.ndarray:
    if spec.datatype == "BYTES" or tensor.datatype == "BYTES":
        if spec.datatype != tensor.datatype:
            raise InvalidInput(f"input {spec.name!r}: the model takes {spec.datatype}, got {tensor.datatype}")
        try:  # onnxruntime's string tensors take str
            texts = [x.decode("utf-8") for x in tensor.value]
        except UnicodeDecodeError:
            raise InvalidInput(f"input {spec.name!r}: BYTES elements must be UTF-8 for this model") from None
        return np.asarray(texts, dtype=object).reshape(tensor.shape)
    arr = tensor.value
    assert isinstance(arr, np.ndarray)
    arr = arr.reshape(tensor.shape)
    if tensor.datatype == spec.datatype:
        return arr
    # Another numeric type is taken when every value survives the conversion (FP32 pixels 0..255 -> UINT8).
    converted = arr.astype(spec.dtype)
    if not (converted == arr).all():
        raise InvalidInput(
            f"input {spec.name!r}: the model takes {spec.datatype}; the {tensor.datatype} "
            "values do not convert exactly"
        )
    return converted
