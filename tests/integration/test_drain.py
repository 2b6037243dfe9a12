"""SIGTERM with uploads in flight, over raw loopback sockets: a body that keeps arriving is read and answered
within the drain; only one that has stopped arriving gets the 503. Events, not clocks: each client waits
for its 100 Continue (the app is reading its body) and for the listener to be gone (the drain has begun)."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import signal
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import MODELS, Server, run_server
from tests.graphs import affine_model, slow_model, write_config
from tests.integration.test_operations import in_the_batcher


def noise_png(seed: int) -> bytes:
    """About 2 MB: random pixels do not compress."""
    pixels = np.random.default_rng(seed).integers(0, 256, (820, 820, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "PNG")
    return out.getvalue()


def begin_upload(srv: Server, size: int) -> socket.socket:
    """Headers with Expect: 100-continue; returns once the server answered 100 (the app reads the body)."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    s.sendall(
        b"POST /predict?model=digits HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % size
    )
    interim = b""
    while b"\r\n\r\n" not in interim:
        chunk = s.recv(1024)
        assert chunk, "closed before the 100 Continue"
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100"), interim
    return s


def read_answer(s: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    data = b""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
            if len(rest) >= int(headers.get("content-length", "0")):
                return int(lines[0].split()[1]), headers, json.loads(rest)
        chunk = s.recv(65536)
        assert chunk, f"closed without a whole answer: {data[:200]!r}"
        data += chunk


def wait_listener_gone(srv: Server) -> None:
    """Until a new connection is refused: uvicorn closes its listeners and shuts its connections down in one
    step, so from here on the drain has reached every upload below."""
    deadline = time.monotonic() + 60  # a bound for a broken server, not a measurement
    while True:
        try:
            socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
        except OSError as e:
            if e.errno == errno.ECONNREFUSED:
                return
        assert time.monotonic() < deadline, "still accepting connections 60 s after SIGTERM"
        time.sleep(0.02)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_uploads_still_arriving_at_sigterm_are_answered_and_a_stalled_one_gets_503(
    tmp_path: Path, workers: str
) -> None:
    env = {
        "MODELSERVE_WORKERS": workers,
        "MODELSERVE_DRAIN_TIMEOUT_S": "60",
        "MODELSERVE_BODY_TIMEOUT_S": "120",
        # The clients below send their second halves as soon as the listener is gone: far within this.
        "MODELSERVE_DRAIN_STALLED_BODY_S": "10",
    }
    pictures = [noise_png(i) for i in range(6)]
    assert all(len(p) > 2_000_000 for p in pictures)
    with run_server(MODELS, tmp_path, env=env) as srv:
        uploads = []
        for picture in pictures:
            s = begin_upload(srv, len(picture))
            s.sendall(picture[: len(picture) // 2])
            uploads.append((s, picture))
        stalled = begin_upload(srv, 1000)
        stalled.sendall(b"0123456789")
        srv.process.send_signal(signal.SIGTERM)
        wait_listener_gone(srv)
        for s, picture in uploads:
            s.sendall(picture[len(picture) // 2 :])
        answers = [read_answer(s) for s, _ in uploads]
        status, headers, body = read_answer(stalled)
        for s, _ in uploads:
            s.close()
        stalled.close()
        assert srv.process.wait(timeout=120) == 0
    assert [a[0] for a in answers] == [200] * len(pictures), answers
    assert all(len(a[2]["predictions"]) == 1 for a in answers)  # type: ignore[arg-type]
    assert status == 503 and headers["retry-after"] == "1" and headers["connection"] == "close"
    assert body["error"] == (
        "the server is shutting down and the request body stopped arriving (nothing for 10 s)"
    )
    assert "Exception in ASGI application" not in srv.log()


def test_requests_still_running_when_the_drain_timeout_ends_get_a_json_503(tmp_path: Path) -> None:
    """uvicorn cancels what still runs at the drain's end: a JSON 503 to retry, not a plain-text 500."""
    repo = tmp_path / "models"
    slow_model(repo / "slow" / "1", matmuls=48)  # about 0.3 s a run on a quiet machine: 12 outlast 1 s
    write_config(repo / "slow", max_batch_size=1)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    env = {"MODELSERVE_DRAIN_TIMEOUT_S": "1", "MODELSERVE_TIMEOUT_S": "280"}
    with run_server(repo, tmp_path, env=env) as srv:

        async def main() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=120) as ac:
                tasks = [asyncio.create_task(ac.post("/v2/models/slow/infer", json=body)) for _ in range(12)]
                while in_the_batcher(srv.url, "slow")[1] < 12:  # all taken in, counted
                    await asyncio.sleep(0.02)
                srv.process.send_signal(signal.SIGTERM)
                return await asyncio.gather(*tasks)

        responses = asyncio.run(main())
        assert srv.process.wait(timeout=120) == 0
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503} and 503 in statuses, statuses
    for r in responses:
        if r.status_code == 503:
            assert r.json() == {
                "error": "the server is shutting down and the request did not finish within the drain timeout"
            }
            assert r.headers["retry-after"] == "1" and r.headers["connection"] == "close"
    assert "Exception in ASGI application" not in srv.log()


def test_connections_queued_when_the_drain_begins_are_answered_not_reset(tmp_path: Path) -> None:
    """Connections the kernel has completed but the server has not accepted yet (its loop accepts once an
    iteration) when the drain begins: closing the listening socket reset them (~1% of connections under
    a load of one connection per request). Now they are taken in and answered. The server runs in this
    process, so the queue is made on purpose: its loop is blocked while the clients connect and send,
    then the drain begins from that same loop step, before anything was accepted."""
    import threading

    import uvicorn
    import uvloop

    from service.app import create_app, serving_stack
    from service.config import Settings
    from service.process.serving import DrainingServer, uvicorn_options

    affine_model(tmp_path / "models" / "affine" / "1")
    settings = Settings(models_dir=str(tmp_path / "models"), grpc_port=0, log_level="warning")
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    request = (
        b"POST /v2/models/affine/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode())
    )
    outcomes: list[str] = []

    def client() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                s.sendall(request)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            outcomes.append(data.split(b"\r\n", 1)[0].decode() if data else "closed without an answer")
        except OSError as e:
            outcomes.append(type(e).__name__)

    async def scenario() -> None:
        app = create_app(settings)
        config = uvicorn.Config(serving_stack(app), **uvicorn_options(settings, app))
        config.load()
        server = DrainingServer(config, app.state.dataplane, 0.0)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[listener])
        clients = [threading.Thread(target=client) for _ in range(8)]
        for t in clients:
            t.start()
        time.sleep(1.0)  # the loop blocked: the kernel queues the 8 connections and their requests
        await server.shutdown(sockets=[listener])
        for t in clients:
            await asyncio.to_thread(t.join, 30)

    uvloop.run(scenario())
    assert outcomes == ["HTTP/1.1 200 OK"] * 8, outcomes
