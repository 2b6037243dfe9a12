"""Slow, silent, oversized and surplus clients against a real server, over raw loopback sockets: every one
is answered (408, 413, 431, 503 as JSON) or closed within its limit, and the server keeps serving."""

from __future__ import annotations

import contextlib
import gzip
import json
import select
import socket
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLES, MODELS, Server, run_server
from tests.graphs import affine_model
from tests.integration.test_direct_path import read_answers

LIMITS = {
    "MODELSERVE_HEADER_TIMEOUT_S": "1",
    "MODELSERVE_BODY_TIMEOUT_S": "2",
    "MODELSERVE_MAX_CONNECTIONS": "40",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(MODELS, tmp_path_factory.mktemp("limits"), env=LIMITS) as srv:
        yield srv


def _connect(srv: Server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    return s


def _read_answer(s: socket.socket, within_s: float) -> tuple[int | None, dict[str, str], bytes]:
    """(status, headers, body) of the answer, or (None, {}, b"") if the server closed without one."""
    s.settimeout(within_s)
    data = b""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        if not data:  # an answer has begun: read it to its end even if it straddles the deadline
            deadline = max(deadline, time.monotonic() + 2.0)
        data += chunk
    if not data:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _is_closed(s: socket.socket) -> bool:
    try:
        s.settimeout(0.05)
        return s.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _readable(s: socket.socket) -> bool:
    return bool(select.select([s], [], [], 0)[0])


def test_slowloris_headers_get_408_within_the_header_timeout(limited: Server) -> None:
    """One more header line every 0.4 s, never finishing: each client gets its 408 while it is still
    trickling, so the 1 s limit covers the whole head, not the gap between lines. Counted, not timed."""
    socks = [_connect(limited) for _ in range(20)]
    for s in socks:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
    answers: dict[int, tuple[int | None, dict[str, str], bytes]] = {}
    lines = 0
    while len(answers) < len(socks) and lines < 150:  # 60 s of trickling at most
        time.sleep(0.4)
        lines += 1
        for n, s in enumerate(socks):
            if n in answers:
                continue
            if _readable(s):  # answered (or closed): read it to its end
                answers[n] = _read_answer(s, 10)
                continue
            with contextlib.suppress(OSError):
                s.sendall(f"X-Slow-{lines}: 1\r\n".encode())
    for s in socks:
        s.close()
    assert len(answers) == len(socks), (
        f"{len(socks) - len(answers)} clients still trickling after {lines} lines"
    )
    assert {a[0] for a in answers.values()} == {408}, list(answers.values())[:2]
    assert all("did not arrive within 1 s" in json.loads(a[2])["error"] for a in answers.values())
    assert httpx.get(f"{limited.url}/v2/health/ready").status_code == 200


def test_silent_connections_are_closed_after_the_header_timeout(limited: Server) -> None:
    socks = [_connect(limited) for _ in range(30)]
    deadline = time.monotonic() + 60  # closed after 1 s; a busy machine may take longer to get there
    open_ = list(socks)
    while open_ and time.monotonic() < deadline:
        open_ = [s for s in open_ if not _is_closed(s)]
    for s in socks:
        s.close()
    assert not open_, f"{len(open_)} of 30 silent connections still open"


@pytest.mark.parametrize(
    ("chunked", "path"),
    [(False, b"/predict"), (True, b"/predict"), (False, b"/v2/models/digits/infer")],
    ids=["predict", "predict-chunked", "v2-infer"],
)
def test_a_body_that_stops_arriving_gets_408(limited: Server, chunked: bool, path: bytes) -> None:
    """(V2 infer is the route the protocol answers itself when its body comes at once: one that stops
    arriving must still get the ASGI path's 408, not wait on that path forever.)"""
    start = time.monotonic()  # before the server can start any clock of its own
    s = _connect(limited)
    if chunked:  # one byte a second, forever
        s.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            % path
        )
    else:  # 10 of the 1,000 bytes declared
        s.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n" % path
        )
        s.sendall(b"0123456789")
    status = None
    while status is None and time.monotonic() - start < 60:
        if chunked:
            s.sendall(b"1\r\na\r\n")
        status, headers, body = _read_answer(s, 1.0)
    s.close()
    assert status == 408, (status, body)
    assert "did not arrive within 2 s" in json.loads(body)["error"]
    assert headers["connection"] == "close"
    assert time.monotonic() - start > 1.9  # not before the 2 s limit (a busy machine only adds to it)


def test_huge_headers_and_too_many_header_lines_get_431(limited: Server) -> None:
    for head in (
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 << 20) + b"\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: 1\r\n" % i for i in range(100_000))
        + b"\r\n",
    ):
        s = _connect(limited)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(head)  # may be refused before it is all sent: the answer is still readable
        status, _, body = _read_answer(s, 30)
        s.close()
        assert status == 431, (status, body[:200])
        assert "exceed" in json.loads(body)["error"] or "more than 100" in json.loads(body)["error"]
    # A request with ordinary headers is untouched.
    assert (
        httpx.get(f"{limited.url}/v2/health/live", headers={f"x-{i}": "v" for i in range(50)}).status_code
        == 200
    )


def test_past_the_connection_cap_a_request_gets_a_json_503_with_retry_after(tmp_path: Path) -> None:
    # Its own server, whose header timeout outlasts the test: the held connections must stay open
    # however slowly a busy machine gets through them.
    affine_model(tmp_path / "models" / "affine" / "1")
    env = {"MODELSERVE_MAX_CONNECTIONS": "40", "MODELSERVE_HEADER_TIMEOUT_S": "300"}
    with run_server(tmp_path / "models", tmp_path, env=env) as srv:
        held = [_connect(srv) for _ in range(45)]
        for s in held:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\n")  # started, unfinished: each holds its connection
        # Once the server has taken the 45 in, a request is over the cap: wait for that, not a while.
        statuses = []
        deadline = time.monotonic() + 60
        while not statuses or (statuses[-1].status_code == 200 and time.monotonic() < deadline):
            statuses.append(httpx.get(f"{srv.url}/v2/health/live", timeout=30))
        r = statuses[-1]
        assert {s.status_code for s in statuses[:-1]} <= {200}
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "too many open connections" in r.json()["error"]
        for s in held:
            s.close()
        deadline = time.monotonic() + 60  # and once they are gone, requests are served again
        while (live := httpx.get(f"{srv.url}/v2/health/live", timeout=30).status_code) == 503:
            assert time.monotonic() < deadline, "still refused after the held connections closed"
            time.sleep(0.05)
        assert live == 200


def test_a_50_mb_body_gets_the_413_not_a_reset(limited: Server) -> None:
    """urllib sends Connection: close and writes the whole body before reading: it must see the 413."""
    request = urllib.request.Request(
        f"{limited.url}/predict?model=digits",
        data=b"x" * (50 << 20),
        headers={"Content-Type": "application/octet-stream"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413
    assert "the limit is" in json.loads(caught.value.read())["error"]
    digit = (EXAMPLES / "digits" / "7.png").read_bytes()
    r = httpx.post(f"{limited.url}/predict?model=digits", files={"file": ("7.png", digit)})
    assert r.status_code == 200


def test_idle_keep_alive_connections_close_after_the_keep_alive_timeout(limited: Server) -> None:
    """uvicorn's keep-alive timeout (5 s) holds with one timer per idle spell (limits.py): a connection
    idle after a direct-path answer or after an ASGI answer is closed once it has been idle 5 s, not
    before; one that sends a request every second for 7 s stays open and answered throughout."""
    body = json.dumps(
        {"inputs": [{"name": "ids", "shape": [1, 4], "datatype": "INT64", "data": [5, 6, 7, 8]}]}
    ).encode()
    infer = (
        b"POST /v2/models/sentiment-lstm/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    health = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    socks = []
    try:
        for req in (infer, health, infer):  # each asks at once (the header timeout here is 1 s)
            socks.append(_connect(limited))
            socks[-1].sendall(req)
            assert read_answers(socks[-1], 1)[0][0] == 200
        direct, asgi, busy = socks
        start = time.monotonic()
        answered = 0
        for i in range(1, 8):  # a request on the busy connection every second, 7 in all
            time.sleep(max(0.0, start + i - time.monotonic()))
            if i == 3:  # 3 s idle: still open
                assert not _is_closed(direct) and not _is_closed(asgi)
            busy.sendall(infer if i % 2 else health)
            assert read_answers(busy, 1)[0][0] == 200
            answered += 1
        # 7 s after their answers: both idle connections were closed by the server (at ~5 s).
        assert _is_closed(direct) and _is_closed(asgi)
        assert answered == 7 and not _is_closed(busy)
    finally:
        for s in socks:
            s.close()


_IDS = b'{"inputs":[{"name":"ids","datatype":"INT64","shape":[1,3],"data":[5,6,7]}]}'
_UPGRADES = {
    # curl --http2 on http://, Java's HttpClient and Spring's RestClient: an h2c offer on every request.
    "h2c": b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
    "websocket": b"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
}


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


@pytest.mark.parametrize("upgrade", list(_UPGRADES))
@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("split", [False, True])
def test_upgrade_requests_are_served_as_http_1_1_with_their_bodies(
    limited: Server, upgrade: str, framing: str, split: bool
) -> None:
    """An Upgrade the server does not take is ignored (RFC 9110 7.8): httptools stopped at its headers, so
    the body was lost (an 'empty body' 400) and a WebSocket handshake hung with no answer. Here the body
    comes in the same write or after it, by length or chunked, and the connection serves the next request
    (pipelined in the same write when not split)."""
    body = _IDS if framing == "length" else _chunked(_IDS)
    frame = (
        b"Content-Length: %d\r\n" % len(_IDS) if framing == "length" else b"Transfer-Encoding: chunked\r\n"
    )
    head = (
        b"POST /v2/models/sentiment-lstm/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + frame
        + _UPGRADES[upgrade]
        + b"\r\n"
    )
    plain = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    with _connect(limited) as s:
        if split:
            s.sendall(head)
            time.sleep(0.3)
            s.sendall(body)
            first = read_answers(s, 1)
            s.sendall(plain)
            answers = first + read_answers(s, 1)
        else:
            s.sendall(head + body + plain)
            answers = read_answers(s, 2)
    (status, headers, content), (ready, _, _) = answers
    assert status == 200, content
    assert json.loads(content)["outputs"][1]["shape"] == [1, 2]
    assert dict(headers).get("upgrade") is None and ready == 200


def test_many_pipelined_upgrade_requests_are_all_answered(limited: Server) -> None:
    """Each Upgrade request is fed again to a new parser in a loop, not a recursion: 1,500 pipelined in
    one write (deeper than Python's recursion limit would allow) are all answered, in order."""
    request = (
        b"POST /v2/models/sentiment-lstm/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n" % len(_IDS) + _UPGRADES["h2c"] + b"X-Request-ID: r%d\r\n\r\n" + _IDS
    )
    with socket.create_connection(("127.0.0.1", limited.port), timeout=60) as s:
        s.sendall(b"".join(request % n for n in range(1500)))
        answers = read_answers(s, 1500)
    assert {status for status, _, _ in answers} == {200}
    assert [dict(headers)["x-request-id"] for _, headers, _ in answers] == [f"r{n}" for n in range(1500)]


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate"])
def test_a_compressing_transfer_coding_before_chunked_is_undone(limited: Server, coding: str) -> None:
    """``Transfer-Encoding: gzip, chunked`` (RFC 9112 7): the body is decompressed, as a Content-Encoding
    would be, not read as the compressed bytes (a misleading 'not valid JSON' 400 before). The connection
    serves the next request."""
    packed = zlib.compress(_IDS) if coding == "deflate" else gzip.compress(_IDS)
    head = (
        b"POST /v2/models/sentiment-lstm/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: %s, chunked\r\n\r\n" % coding.encode()
    )
    with _connect(limited) as s:
        s.sendall(head + _chunked(packed) + b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        (status, _, content), (ready, _, _) = read_answers(s, 2)
    assert status == 200, content
    assert json.loads(content)["outputs"][1]["shape"] == [1, 2] and ready == 200


def test_a_transfer_coding_the_server_cannot_undo_answers_501(limited: Server) -> None:
    """A coding other than gzip or deflate before chunked: a JSON 501 (RFC 9112 6.1), then close."""
    head = (
        b"POST /v2/models/sentiment-lstm/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: br, chunked\r\n\r\n"
    )
    with _connect(limited) as s:
        s.sendall(head + _chunked(b"\x0b\x02\x80" + _IDS))
        status, headers, content = _read_answer(s, 5)
    assert status == 501 and "'br'" in json.loads(content)["error"]
    assert headers.get("connection") == "close"


def test_connect_is_refused_not_held(limited: Server) -> None:
    with _connect(limited) as s:
        s.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        status, _, content = _read_answer(s, 5)
    assert status == 405 and b"CONNECT" in content


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nabc\r\n0\r\n\r\n", b'5\r\n{"inp\r\nzz\r\n'],
    ids=["first chunk", "second chunk"],
)
def test_a_malformed_chunked_body_answers_400_then_closes(limited: Server, body: bytes) -> None:
    """The parser fails on the request's own body: that request answers a JSON 400 (it was closed with no
    answer), counted as such, and the connection closes after it (nothing after the error is parsed)."""
    head = b"POST /v2/models/letters/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with _connect(limited) as s:
        s.sendall(head)
        time.sleep(0.2)  # the ASGI path reads the body as it comes
        s.sendall(body)
        status, headers, content = _read_answer(s, 5)
        assert status == 400, content
        assert b"malformed" in content and headers["connection"] == "close" and headers["x-request-id"]
        assert _is_closed(s)
    assert httpx.get(limited.url + "/v2/health/ready").status_code == 200
