"""V2 infer answered by the HTTP protocol itself (service/transports/http/direct.py) against the same request
taken by the ASGI path, over raw loopback sockets: the same status, body and headers; pipelining,
Connection: close, keys and the request id; and which requests the direct path takes."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.dataplane import DataPlane
from service.transports.http.direct import DirectInfer
from service.transports.http.limits import DIRECT_WAIT_S
from tests.conftest import MODELS, Server, run_server
from tests.integration.test_v2 import pixels

Answer = tuple[int, list[tuple[str, str]], bytes]


def request(path: str, body: bytes, *headers: str) -> tuple[bytes, bytes]:
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode(), body


def read_answers(s: socket.socket, count: int) -> list[Answer]:
    """``count`` answers in order (Content-Length framed), bounded by the socket's timeout."""
    data = b""
    answers: list[Answer] = []
    deadline = time.monotonic() + 30
    while len(answers) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = [(k.lower(), v) for k, v in (line.split(": ", 1) for line in lines[1:])]
            length = int(dict(headers)["content-length"])
            if len(rest) >= length:
                answers.append((int(lines[0].split()[1]), headers, rest[:length]))
                data = rest[length:]
                continue
        assert time.monotonic() < deadline, "no whole answer within 30 s"
        chunk = s.recv(65536)
        assert chunk, f"the server closed after {len(answers)} answers"
        data += chunk
    return answers


def exchange(server: Server, path: str, body: bytes, *headers: str, split: bool) -> Answer:
    """One request on a fresh connection: in one write (the direct path), or with the body sent after the
    protocol's wait for it (the ASGI path)."""
    head, payload = request(path, body, *headers)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        if split:
            s.sendall(head)
            time.sleep(DIRECT_WAIT_S * 3)
            s.sendall(payload)
        else:
            s.sendall(head + payload)
        return read_answers(s, 1)[0]


def comparable(answer: Answer) -> tuple[int, list[tuple[str, str]], bytes]:
    status, headers, body = answer
    return status, sorted((k, v) for k, v in headers if k != "date"), body


@pytest.fixture
def digit_body(digit_png: Callable[[int], bytes]) -> bytes:
    x = pixels(digit_png(7))
    doc = {
        "inputs": [
            {"name": "pixels", "shape": list(x.shape), "datatype": "UINT8", "data": x.ravel().tolist()}
        ]
    }
    return json.dumps(doc).encode()


def test_both_paths_answer_alike(server: Server, digit_body: bytes) -> None:
    """Answers, errors and the binary extension: byte for byte the same body, the same headers."""
    binary_head = json.dumps(
        {
            "inputs": [
                {"name": "ids", "shape": [1, 4], "datatype": "INT64", "parameters": {"binary_data_size": 32}}
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    binary = binary_head + np.array([[5, 6, 7, 8]], np.int64).tobytes()
    cases = [
        ("/v2/models/digits/infer", digit_body, ()),
        ("/v2/models/digits/versions/1/infer", digit_body, ("X-Request-ID: mine-1",)),
        ("/v2/models/nope/infer", digit_body, ()),  # 404
        ("/v2/models/digits/infer", b"{not json", ()),  # 400
        ("/v2/models/digits/infer", b"", ()),  # 400: no body
        (
            "/v2/models/sentiment-lstm/infer",
            binary,
            (f"Inference-Header-Content-Length: {len(binary_head)}",),
        ),
    ]
    for path, body, headers in cases:
        direct = exchange(server, path, body, *headers, split=False)
        asgi = exchange(server, path, body, *headers, split=True)
        request_ids = [dict(a[1])["x-request-id"] for a in (direct, asgi)]
        if headers and headers[0].startswith("X-Request-ID"):
            assert request_ids == ["mine-1", "mine-1"]
        else:  # fresh ids: differ between the two, so leave them out of the comparison
            assert request_ids[0] != request_ids[1]
            direct = (direct[0], [h for h in direct[1] if h[0] != "x-request-id"], direct[2])
            asgi = (asgi[0], [h for h in asgi[1] if h[0] != "x-request-id"], asgi[2])
        assert comparable(direct) == comparable(asgi), path
    assert exchange(server, "/v2/models/digits/infer", digit_body, split=False)[0] == 200
    answer = json.loads(exchange(server, "/v2/models/digits/infer", digit_body, split=False)[2])
    assert int(np.argmax(answer["outputs"][-1]["data"])) == 7


def test_a_body_in_several_reads_is_answered_alike(server: Server, digit_body: bytes) -> None:
    """The body following its headers in three reads, each within the protocol's wait for it: read whole
    (the parts joined in order), the same answer as the body in one write."""
    head, payload = request("/v2/models/digits/infer", digit_body, "X-Request-ID: parts")
    third = len(payload) // 3
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        for part in (head + payload[:third], payload[third : 2 * third], payload[2 * third :]):
            s.sendall(part)
            time.sleep(DIRECT_WAIT_S / 10)
        parts = read_answers(s, 1)[0]
    whole = exchange(server, "/v2/models/digits/infer", digit_body, "X-Request-ID: parts", split=False)
    assert parts[0] == 200
    assert comparable(parts) == comparable(whole)


def test_pipelined_requests_are_answered_in_order(server: Server, digit_body: bytes) -> None:
    """Four requests in one write, direct and not (a GET between): four answers, in the order asked."""
    parts = [
        b"".join(request("/v2/models/digits/infer", digit_body, f"X-Request-ID: p{i}")) for i in range(3)
    ]
    parts.insert(2, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Request-ID: live\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"".join(parts))
        answers = read_answers(s, 4)
    assert [dict(h)["x-request-id"] for _, h, _ in answers] == ["p0", "p1", "live", "p2"]
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]


def test_connection_close_and_keys(tmp_path: Path, digit_body: bytes) -> None:
    """Connection: close is honoured (answer, then close); a missing key answers 401 on the direct path."""
    with run_server(MODELS, tmp_path, env={"MODELSERVE_API_KEYS": "k1"}) as srv:
        assert exchange(srv, "/v2/models/digits/infer", digit_body, split=False)[0] == 401
        ok = exchange(srv, "/v2/models/digits/infer", digit_body, "Authorization: Bearer k1", split=False)
        assert ok[0] == 200
        head, body = request(
            "/v2/models/digits/infer", digit_body, "Authorization: Bearer k1", "Connection: close"
        )
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            s.sendall(head + body)
            status, headers, _ = read_answers(s, 1)[0]
            assert status == 200 and dict(headers)["connection"] == "close"
            assert s.recv(65536) == b""  # closed after the answer


def test_which_requests_the_direct_path_takes() -> None:
    settings = Settings(models_dir=str(MODELS), max_body_bytes=1000)
    direct = DirectInfer(DataPlane(settings, None, None), None)
    length = [(b"content-length", b"10")]

    def taken(method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[str, str | None] | None:
        call = direct.accept(method, url, headers, True)
        return None if call is None else (call.name, call.version)

    assert taken(b"POST", b"/v2/models/digits/infer", length) == ("digits", None)
    assert taken(b"POST", b"/v2/models/digits/versions/2/infer?x=1", length) == ("digits", "2")
    assert taken(b"GET", b"/v2/models/digits/infer", length) is None
    assert taken(b"POST", b"/predict", length) is None  # /predict keeps the ASGI path
    assert taken(b"POST", b"/v2/models/digits", length) is None
    assert taken(b"POST", b"/v2/models/di%2Fgits/infer", length) is None  # percent-encoded: FastAPI's
    assert taken(b"POST", b"/v2/models/digits/infer", []) is None  # no Content-Length
    assert taken(b"POST", b"/v2/models/digits/infer", [(b"content-length", b"1001")]) is None  # over
    assert taken(b"POST", b"/v2/models/digits/infer", [*length, (b"transfer-encoding", b"chunked")]) is None
    assert taken(b"POST", b"/v2/models/digits/infer", [*length, (b"content-encoding", b"gzip")]) is None
    assert taken(b"POST", b"/v2/models/digits/infer", [*length, (b"content-encoding", b"identity")])
    assert taken(b"POST", b"/v2/models/digits/infer", [*length, (b"x-a", b"1"), (b"x-a", b"2")]) is None
