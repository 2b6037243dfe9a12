"""Every row of the error table over HTTP: a clear 4xx JSON error, never a 500 or a hang, and good
requests in the same batch still succeed."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import MODELS, Server, run_server
from tests.unit.test_preprocess import png_header_only


def error_of(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and body["error"]
    return str(body["error"])


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (30, 30), (10, 10, 10)).save(buf, "JPEG")
    return buf.getvalue()


def test_error_table(client: httpx.Client, digit_png: Callable[[int], bytes]) -> None:
    png = digit_png(3)
    cases: list[tuple[str, dict[str, object], int, str]] = [
        (
            "/predict?model=digits",
            {"files": {"f": ("x.png", b"\x89PNG\r\n\x1a\ngarbage", "image/png")}},
            400,
            "decode",
        ),
        ("/predict?model=digits", {"files": {"f": ("x.jpg", png, "image/jpeg")}}, 415, "declared image/jpeg"),
        ("/predict?model=digits", {"content": b"", "headers": {"content-type": "image/png"}}, 400, "empty"),
        (
            "/predict?model=digits",
            {"content": b'{"images": [', "headers": {"content-type": "application/json"}},
            400,
            "not valid JSON",
        ),
        ("/predict?model=digits", {"json": {"pictures": []}}, 400, "exactly one of"),
        ("/predict?model=digits", {"json": {"images": "abc"}}, 400, "must be a list"),
        ("/predict?model=digits", {"json": {"image": "###"}}, 400, "base64"),
        ("/predict?model=digits", {"json": {"images": [7]}}, 400, "image 0 must be a base64 string"),
        (
            "/predict?model=commands",
            {"json": {"audios": ["UklG", "###"]}},
            400,
            "audio 1 is not valid base64",
        ),
        ("/predict?model=digits", {"json": {"images": []}}, 400, "no images"),
        ("/predict?model=nope", {"json": {"text": "hi"}}, 404, "unknown model 'nope'"),
        (
            "/models/digits/versions/7/predict",
            {"content": png, "headers": {"content-type": "image/png"}},
            404,
            "no loaded version 7",
        ),
        (
            "/models/digits/versions/x/predict",
            {"content": png, "headers": {"content-type": "image/png"}},
            404,
            "integers",
        ),
        (
            "/predict?model=digits",
            {"content": b"<xml/>", "headers": {"content-type": "application/xml"}},
            415,
            "unsupported Content-Type",
        ),
        ("/predict?model=digits", {"content": png, "headers": {"content-type": ""}}, 415, "Content-Type"),
        ("/predict?model=digits", {"json": {"text": "a sentence"}}, 415, "takes images"),
        (
            "/predict?model=sentiment",
            {"content": png, "headers": {"content-type": "image/png"}},
            415,
            "takes texts",
        ),
        ("/predict?model=sentiment", {"json": {"text": ""}}, 422, "empty"),
        ("/predict?model=sentiment", {"json": {"texts": ["ok", 5]}}, 422, "must be a string"),
        ("/predict?model=sentiment", {"json": {"text": "x" * 20_001}}, 422, "limit"),
        ("/predict?model=sentiment", {"json": {"texts": ["fine"] * 257}}, 413, "limit is 256"),
        (
            "/predict?model=sentiment",
            {"content": b"\xff\xfe\xfa", "headers": {"content-type": "text/plain"}},
            400,
            "UTF-8",
        ),
        (
            "/predict?model=digits",
            {"files": {"f": ("bomb.png", png_header_only(50_000, 50_000), "image/png")}},
            413,
            "too large",
        ),
        ("/predict?model=digits&top_k=0", {"json": {"image": base64.b64encode(png).decode()}}, 422, "top_k"),
        ("/predict", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 200, ""),
    ]
    for url, kwargs, status, needle in cases:
        r = client.post(url, **kwargs)  # type: ignore[arg-type]
        if status == 200:
            assert r.status_code == 200, r.text
            continue
        assert needle in error_of(r, status), (url, r.text)


def test_unknown_routes_and_methods_answer_json(client: httpx.Client) -> None:
    message = error_of(client.post("/predictions/digits"), 404)
    assert message.startswith("no route for POST /predictions/digits; inference is POST /predict?model=")
    assert "GET /docs" in message
    r = client.get("/predict")
    assert error_of(r, 405) == "GET /predict is not served; this path takes POST"
    assert r.headers["allow"] == "POST"


def test_a_huge_content_length_is_refused_before_the_body_arrives(server: Server) -> None:
    """A client claims 1 GB and sends a few bytes: 413 comes at once, not after a wait for the rest (which
    never comes: a server that waited would answer 408 at its 60 s body timeout, or never)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        start = time.monotonic()
        s.sendall(
            b"POST /predict?model=digits HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 1000000000\r\n\r\n\x89PNG"
        )
        reply = ""
        while '"}' not in reply and time.monotonic() - start < 30:  # headers and body may come apart
            chunk = s.recv(65536).decode(errors="replace")
            if not chunk:
                break
            reply += chunk
        assert time.monotonic() - start < 30  # half the body timeout: however busy the machine
    assert reply.startswith("HTTP/1.1 413")
    assert '"error":"request body is 1000000000 bytes' in reply


def test_a_chunked_body_past_the_limit_is_cut_off(tmp_path: Path) -> None:
    with run_server(MODELS, tmp_path, env={"MODELSERVE_MAX_BODY_BYTES": "100000"}) as srv:

        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(50):
                yield b"\0" * 10_000

        r = httpx.post(
            f"{srv.url}/predict?model=digits",
            content=chunks(),
            headers={"content-type": "image/png"},
            timeout=10,
        )
        assert "exceeds the limit of 100000" in error_of(r, 413)


def test_bad_requests_in_a_crowd_do_not_hurt_good_ones(
    server: Server, digit_png: Callable[[int], bytes]
) -> None:
    good = digit_png(6)
    bad_payloads = [b"not an image", png_header_only(50_000, 50_000), jpeg_bytes()[:100]]

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as ac:
            calls = []
            for i in range(48):
                if i % 3 == 0:
                    content, ctype = bad_payloads[i % len(bad_payloads)], "application/octet-stream"
                else:
                    content, ctype = good, "image/png"
                calls.append(
                    ac.post("/predict?model=digits", content=content, headers={"content-type": ctype})
                )
            return await asyncio.gather(*calls)

    responses = asyncio.run(main())
    for i, r in enumerate(responses):
        if i % 3 == 0:
            assert 400 <= r.status_code < 500 and "error" in r.json()
        else:
            assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "6"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/digits/ready",
        "/v2/models/sentiment/versions/2/ready",
        "/v2/models/sentiment-lstm/versions/1/ready",
    ],
)
def test_health_endpoints(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200, r.text


def test_unknown_model_is_not_ready(client: httpx.Client) -> None:
    assert "unknown model" in error_of(client.get("/v2/models/nope/ready"), 404)


def test_malformed_predict_json_never_answers_5xx(client: httpx.Client) -> None:
    bodies: list[object] = [
        None,
        [],
        "text",
        5,
        {"image": None},
        {"images": None},
        {"images": [1]},
        {"images": [[]]},
        {"images": {"a": 1}},
        {"text": None},
        {"text": 5},
        {"texts": None},
        {"texts": "abc"},
        {"texts": [[1]]},
        {"texts": [{"a": 1}]},
        {"text": "ok", "texts": ["ok"]},
        {"image": "", "text": ""},
    ]
    for body in bodies:
        for model in ("digits", "sentiment"):
            r = client.post(
                f"/predict?model={model}",
                content=json.dumps(body),
                headers={"content-type": "application/json"},
            )
            assert 400 <= r.status_code < 500, (model, body, r.status_code, r.text)
            assert r.json()["error"]
