"""Hostile inputs: deeply nested V2 data, path-like model names, and what answers may reveal."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, run_server
from tests.graphs import copy_shipped


def _nested(leaf: str, depth: int) -> str:
    """JSON text (the client's own encoder would recurse too deep)."""
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize(
    ("model", "tensor", "datatype", "leaf"),
    [("sentiment", "text", "BYTES", '"I loved it"'), ("digits", "pixels", "UINT8", "1")],
)
def test_data_nested_deeper_than_its_shape_answers_400(
    client: httpx.Client, model: str, tensor: str, datatype: str, leaf: str
) -> None:
    for depth in (3, 1000):
        tensor_json = (
            f'{{"name": "{tensor}", "datatype": "{datatype}", "shape": [1], "data": {_nested(leaf, depth)}}}'
        )
        r = client.post(
            f"/v2/models/{model}/infer",
            content=f'{{"inputs": [{tensor_json}]}}',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400, r.text
        assert "nested deeper than its shape's 1 dimensions" in r.json()["error"]


def _raw_post(srv: Server, path: str) -> tuple[int, str]:
    """POST a text with the path exactly as given (httpx would resolve dot segments)."""
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 13\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head.encode() + b'Connection: close\r\n\r\n{"text":"hi"}')
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    return int(head_bytes.split()[1]), body.decode()


def test_path_like_model_names_answer_400_and_no_answer_names_a_server_path(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    copy_shipped("digits", repo)
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"\x08\x07garbage")
    (repo / "digits" / "2").mkdir()
    (repo / "digits" / "2" / "model.onnx").write_bytes(b"junk")
    with run_server(repo, tmp_path, env={"MODELSERVE_STRICT_READINESS": "false"}) as srv:
        answers = []
        for name in ("..", "%2e%2e", ".", "~root", ".hidden", "a%2Fb"):
            status, body = _raw_post(srv, f"/v2/repository/models/{name}/load")
            assert status == 400 if "%2F" not in name else status in (400, 404), (name, status, body)
            answers.append(body)
        for url in ("/predict?model=..", "/predict?model=~root", "/models/..%2F/predict"):
            status, body = _raw_post(srv, url)
            assert status in (400, 404), (url, status, body)
            answers.append(body)
        answers += [
            httpx.get(f"{srv.url}/v2/health/ready").text,
            httpx.get(f"{srv.url}/models").text,
            httpx.get(f"{srv.url}/v2/models/broken").text,
            httpx.post(f"{srv.url}/v2/repository/index").text,
            httpx.post(f"{srv.url}/v2/repository/models/broken/load").text,
            httpx.post(f"{srv.url}/v2/repository/models/nope/load").text,
        ]
        assert "model.onnx cannot be loaded by onnxruntime" in answers[-3]
        for text in answers:
            # No file path, whole or from the repository down (an unknown route's answer names routes).
            assert str(tmp_path) not in text and "/broken/1" not in text and "/digits/2" not in text, text
            assert "ONNXRuntimeError" not in text and "Protobuf parsing" not in text, text
        # The detail is in the log.
        assert str(repo / "broken" / "1" / "model.onnx") in srv.log()


def test_docs_are_open_by_default_and_can_require_a_key(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    copy_shipped("sentiment-lstm", repo)
    env = {"MODELSERVE_API_KEYS": "k1"}
    with run_server(repo, tmp_path, env=env) as srv:
        assert httpx.get(f"{srv.url}/openapi.json").status_code == 200
        assert httpx.get(f"{srv.url}/docs").status_code == 200
    with run_server(repo, tmp_path, env={**env, "MODELSERVE_AUTH_DOCS": "true"}) as srv:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert httpx.get(f"{srv.url}{path}").status_code == 401
        assert httpx.get(f"{srv.url}/openapi.json", headers={"X-API-Key": "k1"}).status_code == 200
