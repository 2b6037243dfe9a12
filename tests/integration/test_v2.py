"""The Open Inference Protocol over HTTP: metadata, JSON and binary tensors, every datatype, errors."""

from __future__ import annotations

import base64
import io
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from PIL import Image

from service.protocol.tensors import pack_bytes, unpack_bytes
from tests.conftest import Server, run_server
from tests.graphs import ECHO_TYPES, copy_shipped, echo_model

NP = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.uint8)[None, :, :, None]


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("echo")
    echo_model(root / "models" / "echo" / "1")
    copy_shipped("digits", root / "models")
    with run_server(root / "models", root) as srv:
        yield srv


def test_server_and_model_metadata(client: httpx.Client) -> None:
    meta = client.get("/v2").json()
    assert meta["name"] == "modelserve" and "binary_tensor_data" in meta["extensions"]
    assert "classification" in meta["extensions"] and "model_repository" in meta["extensions"]
    m = client.get("/v2/models/digits").json()
    assert m["name"] == "digits" and m["versions"] == ["1"] and m["platform"] == "onnxruntime_onnx"
    assert m["inputs"] == [{"name": "pixels", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}]
    assert [o["name"] for o in m["outputs"]] == ["logits", "probabilities"]
    assert client.get("/v2/models/sentiment-lstm/versions/1").json()["inputs"][0]["datatype"] == "INT64"
    inputs = client.get("/v2/models/sentiment/versions/2").json()["inputs"]
    assert [(i["name"], i["datatype"]) for i in inputs] == [
        ("input_ids", "INT64"),
        ("attention_mask", "INT64"),
    ]
    assert client.get("/v2/models/digits/versions/9").status_code == 404


def test_json_tensors_uint8_fp32_nested_and_flat(
    client: httpx.Client, digit_png: Callable[[int], bytes]
) -> None:
    batch = np.concatenate([pixels(digit_png(d)) for d in (4, 0, 7)])
    for datatype, data in (("UINT8", batch.ravel().tolist()), ("FP32", batch.astype(np.float32).tolist())):
        body = {
            "id": "req-42",
            "parameters": {"trace": "abc"},
            "inputs": [{"name": "pixels", "datatype": datatype, "shape": list(batch.shape), "data": data}],
            "outputs": [{"name": "probabilities"}],
        }
        r = client.post("/v2/models/digits/infer", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["model_name"], out["model_version"], out["id"]) == ("digits", "1", "req-42")
        assert out["parameters"] == {"trace": "abc"}
        [probs] = out["outputs"]
        assert probs["name"] == "probabilities" and probs["shape"] == [3, 10] and probs["datatype"] == "FP32"
        assert np.asarray(probs["data"]).reshape(3, 10).argmax(1).tolist() == [4, 0, 7]


def test_bytes_inputs_carry_images_and_sentences(
    client: httpx.Client, digit_png: Callable[[int], bytes]
) -> None:
    images = [base64.b64encode(digit_png(d)).decode() for d in (9, 5)]
    r = client.post(
        "/v2/models/digits/infer",
        json={
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": images}],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
        },
    )
    assert r.status_code == 200, r.text
    assert [s.split(":")[1:] for s in r.json()["outputs"][0]["data"]] == [["9", "9"], ["5", "5"]]
    r = client.post(
        "/v2/models/sentiment/versions/2/infer",
        json={
            "inputs": [
                {
                    "name": "text",
                    "datatype": "BYTES",
                    "shape": [3, 1],
                    "data": [["I loved this film"], ["terrible, a waste of money"], ["not bad at all"]],
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}],
        },
    )
    rows = r.json()["outputs"][0]
    assert rows["shape"] == [3, 2] and rows["datatype"] == "BYTES"
    assert [rows["data"][i].split(":")[2] for i in (0, 2, 4)] == ["positive", "negative", "positive"]
    score, index, label = rows["data"][0].split(":")
    assert 0.5 < float(score) <= 1 and index == "1" and label == "positive"


def test_text_model_takes_token_ids_padded_per_request(client: httpx.Client) -> None:
    ids = client.post(
        "/v2/models/sentiment-lstm/infer",
        json={"inputs": [{"name": "ids", "datatype": "INT64", "shape": [2, 3], "data": [5, 6, 0, 7, 0, 0]}]},
    )
    assert ids.status_code == 200, ids.text
    assert ids.json()["outputs"][1]["shape"] == [2, 2]


@pytest.mark.parametrize(
    ("shape", "data", "words"),
    [
        ([1, 0], [], "no tokens"),
        ([1, 3], [5, -3, 6], "[0, 28852)"),
        ([1, 3], [5, 28852, 6], "[0, 28852)"),
        ([1, 3], [5, 2**62, 6], "[0, 28852)"),
        ([2, 3], [5, 6, 7, 0, 0, 0], "row 1 starts with the pad id 0"),
        ([1, 3], [0, 5, 6], "row 0 starts with the pad id 0"),
        ([2, 3], [5, 6, 7, 5, 0, 6], "row 1 has a token after the pad id 0"),
    ],
)
def test_token_ids_the_model_cannot_read_answer_422(
    client: httpx.Client, shape: list[int], data: list[int], words: str
) -> None:
    """Ids outside the vocabulary failed the graph's lookup (500); a row of padding only, or a token after
    padding, answered 200 with a score the model never meant (it reads a row up to its first pad)."""
    body = {"inputs": [{"name": "ids", "datatype": "INT64", "shape": shape, "data": data}]}
    r = client.post("/v2/models/sentiment-lstm/infer", json=body)
    assert r.status_code == 422, r.text
    assert words in r.json()["error"]
    last = {"inputs": [{"name": "ids", "datatype": "INT64", "shape": [1, 3], "data": [28851, 1, 5]}]}
    assert client.post("/v2/models/sentiment-lstm/infer", json=last).status_code == 200


def test_audio_features_that_are_not_finite_answer_422(client: httpx.Client) -> None:
    """1e39 is infinite as FP32, and the binary extension carries NaN: both answered 200 with noise."""
    tensor = {"name": "features", "datatype": "FP32", "shape": [1, 98, 40]}
    r = client.post("/v2/models/commands/infer", json={"inputs": [{**tensor, "data": [1e39] * 3920}]})
    assert r.status_code == 422 and "NaN or infinite" in r.json()["error"], r.text
    raw = np.full(3920, np.nan, dtype="<f4").tobytes()
    head = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]})
    r = client.post(
        "/v2/models/commands/infer",
        content=head + raw,
        headers={"inference-header-content-length": str(len(head))},
    )
    assert r.status_code == 422 and "NaN or infinite" in r.json()["error"], r.text
    ok = client.post("/v2/models/commands/infer", json={"inputs": [{**tensor, "data": [0.5] * 3920}]})
    assert ok.status_code == 200, ok.text


def binary_request(
    inputs: list[tuple[str, str, list[int], bytes]], outputs: list[dict[str, object]] | None, **params: object
) -> tuple[bytes, dict[str, str]]:
    header: dict[str, object] = {
        "inputs": [
            {"name": n, "datatype": t, "shape": s, "parameters": {"binary_data_size": len(b)}}
            for n, t, s, b in inputs
        ]
    }
    if outputs is not None:
        header["outputs"] = outputs
    if params:
        header["parameters"] = params
    head = orjson.dumps(header)
    return head + b"".join(b for *_, b in inputs), {"Inference-Header-Content-Length": str(len(head))}


def split_binary(r: httpx.Response) -> tuple[dict[str, object], dict[str, bytes]]:
    n = int(r.headers["inference-header-content-length"])
    header = orjson.loads(r.content[:n])
    blobs, pos = {}, n
    for out in header["outputs"]:
        size = out["parameters"]["binary_data_size"]
        blobs[out["name"]] = r.content[pos : pos + size]
        pos += size
    assert pos == len(r.content)
    return header, blobs


def test_binary_tensors_in_and_out(client: httpx.Client, digit_png: Callable[[int], bytes]) -> None:
    batch = np.concatenate([pixels(digit_png(d)) for d in range(8)])
    body, headers = binary_request(
        [("pixels", "UINT8", list(batch.shape), batch.tobytes())], None, binary_data_output=True
    )
    r = client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    header, blobs = split_binary(r)
    probs = np.frombuffer(blobs["probabilities"], dtype=np.float32).reshape(8, 10)
    assert probs.argmax(1).tolist() == list(range(8))
    # PNG bytes as a binary BYTES input, one output in JSON and one in binary.
    body, headers = binary_request(
        [("image", "BYTES", [2], pack_bytes([digit_png(3), digit_png(6)]))],
        [
            {"name": "logits", "parameters": {"binary_data": False}},
            {"name": "probabilities", "parameters": {"binary_data": True, "classification": 1}},
        ],
    )
    r = client.post("/v2/models/digits/infer", content=body, headers=headers)
    n = int(r.headers["inference-header-content-length"])
    header = orjson.loads(r.content[:n])
    assert "data" in header["outputs"][0] and "data" not in header["outputs"][1]
    strings_blob = r.content[n:]
    first_len = struct.unpack_from("<I", strings_blob)[0]
    assert strings_blob[4 : 4 + first_len].decode().endswith(":3:3")


def test_every_datatype_round_trips_in_json_and_binary(echo_server: Server) -> None:
    values = {
        "BOOL": [[True, False, True]],
        "UINT8": [[0, 128, 255]],
        "UINT16": [[0, 1000, 65535]],
        "UINT32": [[0, 7, 4294967295]],
        "UINT64": [[0, 9, 2**64 - 1]],
        "INT8": [[-128, 0, 127]],
        "INT16": [[-32768, 5, 32767]],
        "INT32": [[-(2**31), 0, 2**31 - 1]],
        "INT64": [[-(2**63), 1, 2**63 - 1]],
        "FP16": [[0.5, -1.25, 1024.0]],
        "FP32": [[1.5, -2.25, 3.0e10]],
        "FP64": [[1e-300, -2.5, 1e300]],
        "BYTES": [["alpha", "", "γειά"]],
    }
    with httpx.Client(base_url=echo_server.url) as c:
        inputs = [{"name": f"in_{t}", "datatype": t, "shape": [1, 3], "data": v} for t, v in values.items()]
        r = c.post("/v2/models/echo/infer", json={"inputs": inputs})
        assert r.status_code == 200, r.text
        got = {o["name"]: o for o in r.json()["outputs"]}
        for t, v in values.items():
            assert got[f"out_{t}"]["datatype"] == t
            assert got[f"out_{t}"]["shape"] == [1, 3]
            assert got[f"out_{t}"]["data"] == v[0], t
        binary_inputs = []
        for t, v in values.items():
            raw = (
                pack_bytes([s.encode() for s in v[0]])
                if t == "BYTES"
                else np.asarray(v, dtype=NP[t]).tobytes()
            )
            binary_inputs.append((f"in_{t}", t, [1, 3], raw))
        body, headers = binary_request(binary_inputs, None, binary_data_output=True)
        r = c.post("/v2/models/echo/infer", content=body, headers=headers)
        assert r.status_code == 200, r.text
        _, blobs = split_binary(r)
        for name, t, _, raw in binary_inputs:
            assert blobs[name.replace("in_", "out_")] == raw, t
    assert set(values) == set(ECHO_TYPES)


def test_v2_errors(echo_server: Server, client: httpx.Client) -> None:
    def post(
        url: str,
        body: object,
        status: int,
        needle: str,
        c: httpx.Client = client,
        headers: dict[str, str] | None = None,
    ) -> None:
        r = c.post(url, content=body if isinstance(body, bytes) else orjson.dumps(body), headers=headers)
        assert r.status_code == status, (r.status_code, r.text)
        assert needle in r.json()["error"], r.text

    px = {"name": "pixels", "datatype": "UINT8", "shape": [1, 28, 28, 1], "data": [0] * 784}
    post("/v2/models/digits/infer", b"{nope", 400, "the request body is not valid JSON")
    # With binary tensors the JSON is the inference header before them, and the error names it so.
    post(
        "/v2/models/digits/infer",
        b"{nope" + bytes(784),
        400,
        "the inference header is not valid JSON",
        headers={"Inference-Header-Content-Length": "5"},
    )
    post("/v2/models/digits/infer", {"inputs": []}, 400, "empty")
    post(
        "/v2/models/digits/infer",
        {"inputs": [{**px, "data": [0] * 783}]},
        422,
        "holds 784 elements, data has 783",
    )
    post(
        "/v2/models/digits/infer",
        {"inputs": [{**px, "shape": [1, 28, 28, 3], "data": [0] * 2352}]},
        422,
        "does not match the model's [-1, 28, 28, 1]",
    )
    post(
        "/v2/models/digits/infer",
        {"inputs": [{**px, "datatype": "FP32", "data": [0.5] * 784}]},
        422,
        "do not convert exactly",
    )
    post("/v2/models/digits/infer", {"inputs": [{**px, "data": [300] * 784}]}, 422, "out of range")
    post("/v2/models/digits/infer", {"inputs": [{**px, "data": [1.5] * 784}]}, 422, "another type")
    post("/v2/models/digits/infer", {"inputs": [{**px, "data": [0] * 783 + [True]}]}, 422, "true or false")
    post("/v2/models/digits/infer", {"inputs": [{**px, "datatype": "COMPLEX"}]}, 400, "unknown datatype")
    post("/v2/models/digits/infer", {"inputs": [{**px, "name": "image"}]}, 422, "has no input image")
    post(
        "/v2/models/digits/infer",
        {"inputs": [px], "outputs": [{"name": "nope"}]},
        422,
        "has no output 'nope'",
    )
    post("/v2/models/digits/infer", {"inputs": [{**px, "shape": [0, 28, 28, 1], "data": []}]}, 422, "empty")
    post("/v2/models/nope/infer", {"inputs": [px]}, 404, "unknown model")
    post(
        "/v2/models/digits/infer",
        {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["%%"]}]},
        400,
        "base64",
    )
    r = client.post(
        "/v2/models/digits/infer",
        content=b'{"inputs": []}xx',
        headers={"Inference-Header-Content-Length": "99"},
    )
    assert r.status_code == 400 and "does not fit" in r.json()["error"]
    body, headers = binary_request([("pixels", "UINT8", [1, 28, 28, 1], b"\0" * 700)], None)
    r = client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert r.status_code == 422 and "needs 784 bytes" in r.json()["error"]
    with httpx.Client(base_url=echo_server.url) as c:
        only_one = {"inputs": [{"name": "in_FP32", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
        post("/v2/models/echo/infer", only_one, 422, "needs input", c)


def test_malformed_requests_never_answer_5xx(client: httpx.Client) -> None:
    px = {"name": "pixels", "datatype": "UINT8", "shape": [1, 28, 28, 1], "data": [0] * 784}
    bodies: list[object] = [
        [],
        "inputs",
        42,
        None,
        {"inputs": {}},
        {"inputs": [1]},
        {"inputs": [{}]},
        {"inputs": [{**px, "parameters": []}]},
        {"inputs": [px], "parameters": [1]},
        {"inputs": [px], "outputs": {}},
        {"inputs": [px], "outputs": [3]},
        {"inputs": [px], "outputs": [{}]},
        {"inputs": [px], "outputs": [{"name": "logits", "parameters": "x"}]},
        {"inputs": [px], "outputs": [{"name": "logits", "parameters": {"classification": -1}}]},
        {"inputs": [px], "outputs": [{"name": "logits", "parameters": {"classification": "3"}}]},
        {"inputs": [{**px, "shape": "1,28,28,1"}]},
        {"inputs": [{**px, "shape": [1, -28, 28, 1]}]},
        {"inputs": [{**px, "shape": [1.5, 28, 28, 1]}]},
        {"inputs": [{**px, "data": {"a": 1}}]},
        {"inputs": [{**px, "data": [[0] * 783, [0]]}]},
        {"inputs": [{**px, "data": ["a"] * 784}]},
        {"inputs": [{**px, "data": [None] * 784}]},
        {"inputs": [{**px, "datatype": 7}]},
        {"inputs": [{**px, "datatype": "FP32", "data": [float("nan")] * 784}]},
        {"inputs": [{**px, "datatype": "BOOL", "data": [1] * 784}]},
        {"inputs": [px, px]},
        {"inputs": [{**px, "parameters": {"binary_data_size": 10}}]},
        {"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": [5]}]},
    ]
    # Valid base64 that is no image: bad for the image model (a sentence like any other for the text one).
    not_an_image = {
        "inputs": [{"name": "t", "datatype": "BYTES", "shape": [2], "data": [["aGk="], ["aGk="]]}]
    }
    for body in [*bodies, not_an_image]:
        content = orjson.dumps(body) if body is not None else b"null"
        for model in ("digits", "sentiment") if body is not not_an_image else ("digits",):
            r = client.post(f"/v2/models/{model}/infer", content=content)
            assert 400 <= r.status_code < 500, (model, body, r.status_code, r.text)
            assert r.json()["error"]


def test_binary_classification_frames_non_ascii_labels_by_bytes(
    tmp_path: Path, digit_png: Callable[[int], bytes]
) -> None:
    target = copy_shipped("digits", tmp_path / "models")
    meta = orjson.loads((target / "model.json").read_bytes())
    meta["labels"] = [f"zéro-{d}-数字" for d in range(10)]
    (target / "model.json").write_bytes(orjson.dumps(meta))
    body, headers = binary_request(
        [("pixels", "UINT8", [1, 28, 28, 1], pixels(digit_png(7)).tobytes())],
        [{"name": "probabilities", "parameters": {"binary_data": True, "classification": 2}}],
    )
    with run_server(tmp_path / "models", tmp_path) as srv:
        r = httpx.post(f"{srv.url}/v2/models/digits/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    _, blobs = split_binary(r)
    best, second = [x.decode() for x in unpack_bytes(blobs["probabilities"])]
    assert best.split(":", 2)[1:] == ["7", "zéro-7-数字"] and second.endswith("-数字")


@pytest.mark.parametrize(
    ("model", "name", "datatype", "shape"),
    [
        ("letters", "features", "FP32", [0, 2**63 - 1]),
        ("sentiment-lstm", "ids", "INT64", [0, 2**62]),
        ("letters", "x", "FP32", [2**40, 0, 5]),  # an input the graph lacks: the shape is read first
        ("letters", "features", "FP32", [1] * 40),
    ],
)
def test_shapes_no_array_can_have_answer_422(
    client: httpx.Client, model: str, name: str, datatype: str, shape: list[int]
) -> None:
    """A 0 dimension leaves no element to check, and numpy then refused the huge dimension beside it (or
    the 40 dimensions) when the data was shaped: 500. JSON data and binary data alike."""
    tensor = {"name": name, "datatype": datatype, "shape": shape}
    data = [1] if 0 not in shape else []
    r = client.post(f"/v2/models/{model}/infer", json={"inputs": [{**tensor, "data": data}]})
    assert r.status_code == 422 and "is too large" in r.json()["error"], r.text
    head = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": 0}}]})
    r = client.post(
        f"/v2/models/{model}/infer", content=head, headers={"inference-header-content-length": str(len(head))}
    )
    assert r.status_code == 422 and "is too large" in r.json()["error"], r.text
