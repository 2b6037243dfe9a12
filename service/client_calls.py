"""The client's wire: each call as an HTTP request (path, body), each answer decoded into results, each
error status as its exception, and the retry policy. service/client.py sends them, sync or async."""

from __future__ import annotations

import io
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson

from service.protocol.tensors import NUMPY_TO_V2, V2_TO_NUMPY, pack_bytes, unpack_bytes

DEFAULT_URL = "http://localhost:8080"
ImageLike = str | os.PathLike[str] | bytes | Any  # Any: a PIL.Image.Image
AudioLike = str | os.PathLike[str] | bytes  # a WAV file: its path or its bytes


# ------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Label:
    label: str
    index: int
    score: float


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    score: float
    top_k: list[Label] = field(default_factory=list)
    model: str = ""
    version: str = ""
    notes: dict[str, Any] = field(default_factory=dict)
    """What else the server said about this input (tabular: ``out_of_range``; ?explain=1: ``input``)."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    versions: list[str]
    latest: str
    input_kind: str
    labels: list[str]
    inputs: list[dict[str, Any]]
    features: list[dict[str, Any]] = field(default_factory=list)
    """Tabular models: the features (name, type, min/max or categories, required, default)."""


# -------------------------------------------------------------------------------------------- errors
class ModelServeError(Exception):
    """An error answer from the server (or no answer at all, status_code 0)."""

    status_code = 0

    def __init__(self, message: str, status_code: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.request_id = request_id


class BadRequestError(ModelServeError):
    status_code = 400


class AuthenticationError(ModelServeError):
    status_code = 401


class PermissionDeniedError(ModelServeError):
    status_code = 403


class NotFoundError(ModelServeError):
    status_code = 404


class PayloadTooLargeError(ModelServeError):
    status_code = 413


class UnsupportedMediaTypeError(ModelServeError):
    status_code = 415


class InvalidInputError(ModelServeError):
    status_code = 422


class ServerError(ModelServeError):
    status_code = 500


class OverloadedError(ModelServeError):
    """503 after every retry: the server stayed overloaded (or not ready)."""

    status_code = 503


class QueueTimeoutError(ModelServeError):
    status_code = 504


class ConnectionFailedError(ModelServeError):
    """No answer: the connection failed on every try."""


_ERRORS = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        InvalidInputError,
        ServerError,
        OverloadedError,
        QueueTimeoutError,
    )
}


def raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = str(response.json()["error"])
    except Exception:
        message = response.text[:500] or response.reason_phrase
    cls = _ERRORS.get(response.status_code, ServerError if response.status_code >= 500 else ModelServeError)
    raise cls(message, response.status_code, response.headers.get("x-request-id"))


# ------------------------------------------------------------------------------- requests and answers
@dataclass
class Call:
    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def _image_bytes(image: ImageLike) -> tuple[str, bytes]:
    if isinstance(image, bytes | bytearray):
        return "image", bytes(image)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        return path.name, path.read_bytes()
    if hasattr(image, "save"):  # a PIL image
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return "image.png", buf.getvalue()
    raise TypeError(f"an image is a path, bytes or a PIL image, not {type(image).__name__}")


def _predict_path(model: str) -> str:
    return f"/models/{_segment(model)}/predict"


def _segment(value: object) -> str:
    """A model name or version as one URL path segment: "a/../digits" must reach the server's name check
    as it is, not be collapsed by the URL into another model's path."""
    return quote(str(value), safe="")


def predict_images_call(model: str, images: Sequence[ImageLike], top_k: int) -> Call:
    files = []
    for i, image in enumerate(images):
        name, data = _image_bytes(image)
        files.append((f"file{i}", (name, data, "application/octet-stream")))
    return Call("POST", _predict_path(model), {"files": files, "params": {"top_k": top_k}})


def predict_audio_call(model: str, clips: Sequence[AudioLike], top_k: int) -> Call:
    """WAV files (paths or bytes) as multipart files: the server decodes, resamples and checks them."""
    files = []
    for i, clip in enumerate(clips):
        if isinstance(clip, bytes | bytearray):
            name, data = f"clip{i}.wav", bytes(clip)
        elif isinstance(clip, str | os.PathLike):
            path = Path(clip)
            name, data = path.name, path.read_bytes()
        else:
            raise TypeError(f"an audio clip is a WAV file's path or bytes, not {type(clip).__name__}")
        files.append((f"file{i}", (name, data, "audio/wav")))
    return Call("POST", _predict_path(model), {"files": files, "params": {"top_k": top_k}})


def text_list(text: object) -> list[str]:
    """``predict_text``'s argument as a list of texts: one str, or a sequence of them."""
    if isinstance(text, str):
        return [text]
    if isinstance(text, bytes | bytearray) or not isinstance(text, Sequence | np.ndarray):
        raise TypeError(f"text is a str or a list of str, not {type(text).__name__} (decode bytes first)")
    texts = list(text)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, not str")
    return texts


def predict_texts_call(model: str, texts: Sequence[str], top_k: int) -> Call:
    return Call(
        "POST",
        _predict_path(model),
        {"json": {"texts": list(texts)}, "params": {"top_k": top_k}},
    )


def predict_rows_call(model: str, rows: Sequence[Any], top_k: int) -> Call:
    """Named rows (dicts) as {"rows": ...}; ordered ones (lists of values) as {"instances": ...}."""
    rows = list(rows)
    key = "rows" if all(isinstance(r, Mapping) for r in rows) else "instances"
    doc = {key: [_row(i, r) for i, r in enumerate(rows)]}
    return Call("POST", _predict_path(model), {"json": doc, "params": {"top_k": top_k}})


def _row(i: int, row: Any) -> dict[str, Any] | list[Any]:
    """One row as JSON can carry it: NaN is a missing value (null, as pandas means it); numpy scalars
    become numbers."""
    if isinstance(row, Mapping):
        return {str(k): _cell(i, v) for k, v in row.items()}
    if isinstance(row, str | bytes) or not isinstance(row, Sequence | np.ndarray):
        raise TypeError(f"row {i} is {type(row).__name__}: a dict of named features or a list of values")
    return [_cell(i, v) for v in row]


def _cell(i: int, value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return None
        raise ValueError(f"row {i} holds {value}, which JSON cannot carry (NaN is sent as a missing value)")
    return value


def predict_csv_call(model: str, csv: str | bytes | os.PathLike[str], top_k: int) -> Call:
    """A CSV document with a header row: a path, or its text or bytes."""
    if isinstance(csv, os.PathLike) or (isinstance(csv, str) and "\n" not in csv):
        path = Path(csv)  # one line is no CSV document (a header and no row): a path
        if not path.is_file():
            what = "a directory" if path.is_dir() else "no such file"
            raise FileNotFoundError(f"{str(csv)!r}: {what}; give a CSV file's path or the CSV text itself")
        data = path.read_bytes()
    else:
        data = csv.encode("utf-8") if isinstance(csv, str) else bytes(csv)
    headers = {"content-type": "text/csv"}
    return Call(
        "POST",
        _predict_path(model),
        {"content": data, "headers": headers, "params": {"top_k": top_k}},
    )


_PREDICTION_KEYS = {"label", "index", "score", "top_k"}


def decode_predictions(response: httpx.Response) -> list[Prediction]:
    body = response.json()
    return [
        Prediction(
            p["label"],
            p["index"],
            p["score"],
            [Label(**t) for t in p.get("top_k", [])],
            body["model"],
            body["version"],
            {k: v for k, v in p.items() if k not in _PREDICTION_KEYS},
        )
        for p in body["predictions"]
    ]


def infer_call(
    model: str, inputs: dict[str, Any], outputs: Sequence[str] | None, version: str | None, binary: bool
) -> Call:
    if not isinstance(inputs, Mapping):
        raise TypeError(f"inputs is a dict of input name -> array, not {type(inputs).__name__}")
    tensors, blobs = [], []
    for name, value in inputs.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "USO":
            datatype = "BYTES"
            items = [x if isinstance(x, bytes) else str(x).encode() for x in arr.ravel().tolist()]
            raw = pack_bytes(items)
            data: Any = [x.decode("utf-8", "replace") for x in items]
        else:
            if arr.dtype not in NUMPY_TO_V2:
                raise TypeError(
                    f"input {name!r}: numpy {arr.dtype} has no V2 datatype (bool, int, float, str)"
                )
            datatype = NUMPY_TO_V2[arr.dtype]
            raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            data = arr.ravel().tolist()
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = data
        tensors.append(tensor)
    doc: dict[str, Any] = {"inputs": tensors}
    if outputs:
        doc["outputs"] = [{"name": o, "parameters": {"binary_data": binary}} for o in outputs]
    elif binary:
        doc["parameters"] = {"binary_data_output": True}
    header = orjson.dumps(doc)
    path = f"/v2/models/{_segment(model)}" + (f"/versions/{_segment(version)}" if version else "") + "/infer"
    if not binary:
        return Call("POST", path, {"content": header, "headers": {"content-type": "application/json"}})
    return Call(
        "POST",
        path,
        {
            "content": header + b"".join(blobs),
            "headers": {
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(len(header)),
            },
        },
    )


def decode_tensors(response: httpx.Response) -> dict[str, np.ndarray]:
    """V2 outputs as arrays, from JSON or the binary extension."""
    size = response.headers.get("inference-header-content-length")
    content = response.content
    header = orjson.loads(content[: int(size)] if size else content)
    offset = int(size) if size else 0
    out = {}
    for t in header["outputs"]:
        shape = t["shape"]
        n = (t.get("parameters") or {}).get("binary_data_size")
        if n is None:
            data = t["data"]
            arr = (
                np.asarray(data, dtype=object)
                if t["datatype"] == "BYTES"
                else np.asarray(data, dtype=V2_TO_NUMPY[t["datatype"]])
            )
        else:
            chunk = content[offset : offset + n]
            offset += n
            if t["datatype"] == "BYTES":
                arr = np.asarray(unpack_bytes(chunk), dtype=object)
            else:
                arr = np.frombuffer(chunk, dtype=V2_TO_NUMPY[t["datatype"]].newbyteorder("<"))
        out[t["name"]] = arr.reshape(shape)
    return out


def decode_models(response: httpx.Response) -> list[ModelInfo]:
    return [
        ModelInfo(
            m["name"],
            m["versions"],
            m["latest"],
            m["input_kind"],
            m["labels"],
            m["inputs"],
            m.get("features", []),
        )
        for m in response.json()["models"]
    ]


# ----------------------------------------------------------------------------------------- retries
@dataclass
class RetryPolicy:
    """503 and connection errors are retried up to ``retries`` times; waits grow from ``backoff_s``
    (doubling, with jitter) up to ``max_backoff_s``; a 503's Retry-After is honoured up to that cap."""

    retries: int = 3
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0

    def next_wait(
        self, attempt: int, response: httpx.Response | None, error: Exception | None, url: str
    ) -> float | None:
        """Seconds to wait before the next try, or None when ``response`` is final (raised if an error)."""
        if error is not None:
            if attempt >= self.retries:
                raise ConnectionFailedError(f"no answer from {url}: {error}") from error
            return self.wait_s(attempt, None)
        assert response is not None
        if response.status_code == 503 and attempt < self.retries:
            return self.wait_s(attempt, response)
        raise_for(response)
        return None

    def wait_s(self, attempt: int, response: httpx.Response | None) -> float:
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after is not None:
            try:
                return min(float(retry_after), self.max_backoff_s)
            except ValueError:
                pass
        return min(self.backoff_s * (2**attempt) * (0.5 + random.random()), self.max_backoff_s)


def client_headers(api_key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"} if api_key else {}
