"""Over HTTP, with a deliberately slow real ONNX graph: a full queue answers 503, a request past its
timeout 504 (never run), a client that leaves is dropped; and repository polling."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import run_server
from tests.graphs import affine_model, copy_shipped, slow_model, write_config
from tests.integration.test_operations import metric

pytestmark = pytest.mark.slow

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


def test_full_queue_answers_503_with_retry_after_and_late_requests_504(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    slow_model(repo / "slow" / "1", matmuls=40)  # about 0.25 s a run on this machine
    write_config(repo / "slow", max_batch_size=1, max_queue_size=4, timeout_s=0.3)
    with run_server(repo, tmp_path) as srv:

        async def main() -> list[httpx.Response]:
            async with httpx.AsyncClient(
                base_url=srv.url, timeout=30, limits=httpx.Limits(max_connections=40)
            ) as ac:
                return await asyncio.gather(*(ac.post("/v2/models/slow/infer", json=BODY) for _ in range(30)))

        responses = asyncio.run(main())
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 503, 504}, codes
        assert 200 in codes and 503 in codes and 504 in codes, codes
        for r in responses:
            if r.status_code == 503:
                assert r.headers["retry-after"] and "overloaded" in r.json()["error"]
            if r.status_code == 504:
                assert "was not run" in r.json()["error"]
        # Overload passes: the model answers normally afterwards.
        assert httpx.post(f"{srv.url}/v2/models/slow/infer", json=BODY, timeout=30).status_code == 200


def test_the_queue_depth_gauge_drops_when_queued_requests_time_out(tmp_path: Path) -> None:
    """Requests answered 504 at their deadline stayed in the queue until a batch was taken, and the gauge
    kept them: it read 8 (and 38, or 89, in the fuzzing pass) on an idle server until the next request.
    Now the deadline's sweep takes them out and reports the depth."""
    repo = tmp_path / "models"
    slow_model(repo / "slow" / "1", matmuls=96)  # about 0.6 s a run on a quiet machine, more when loaded
    write_config(repo / "slow", max_batch_size=1, timeout_s=0.3)
    with run_server(repo, tmp_path) as srv:

        async def main() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as ac:
                return await asyncio.gather(*(ac.post("/v2/models/slow/infer", json=BODY) for _ in range(10)))

        codes = sorted(r.status_code for r in asyncio.run(main()))
        assert 504 in codes and set(codes) <= {200, 504}, codes
        depth = metric(
            httpx.get(f"{srv.url}/metrics").text, "modelserve_queue_depth", model="slow", version="1"
        )
        assert depth == 0, f"the gauge reads {depth:g} queued after every request was answered"


def test_a_client_that_leaves_is_not_run(tmp_path: Path) -> None:
    """Five callers give up while a slow run holds the only instance: none of their requests runs.

    Counted from the batch-run metric, not timed, so a loaded machine cannot fake a pass or a failure.
    """
    repo = tmp_path / "models"
    slow_model(repo / "slow" / "1", matmuls=96)  # about 0.6 s a run on a quiet machine, more when loaded
    write_config(repo / "slow", max_batch_size=1)
    with run_server(repo, tmp_path) as srv:

        def runs() -> float:
            scrape = httpx.get(f"{srv.url}/metrics").text
            return metric(scrape, "modelserve_batch_runs_total", model="slow", version="1")

        before = runs()

        def gauge(name: str) -> float:
            return metric(httpx.get(f"{srv.url}/metrics").text, name, model="slow", version="1")

        async def until(what: str, check) -> None:  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + 60
            while not check():
                assert time.monotonic() < deadline, what
                await asyncio.sleep(0.02)

        async def main() -> None:
            async with httpx.AsyncClient(base_url=srv.url, timeout=120) as ac:
                busy = asyncio.create_task(ac.post("/v2/models/slow/infer", json=BODY))
                await until("the busy run started", lambda: gauge("modelserve_in_flight") == 1)
                async with httpx.AsyncClient(base_url=srv.url, timeout=120) as impatient:
                    callers = [
                        asyncio.create_task(impatient.post("/v2/models/slow/infer", json=BODY))
                        for _ in range(5)
                    ]
                    # Once all five wait behind the busy run, they give up (their connections close).
                    await until("five queued", lambda: gauge("modelserve_queue_depth") == 5)
                    for caller in callers:
                        caller.cancel()
                    await asyncio.gather(*callers, return_exceptions=True)
                assert (await busy).status_code == 200

        asyncio.run(main())
        assert httpx.post(f"{srv.url}/v2/models/slow/infer", json=BODY, timeout=30).status_code == 200
        # The busy request and the last one ran; the five abandoned ones were skipped in the queue.
        assert runs() - before == 2


def test_repository_polling_loads_reloads_and_unloads(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    affine_model(repo / "a" / "1")
    with run_server(repo, tmp_path, env={"MODELSERVE_REPOSITORY_POLL_S": "0.2"}) as srv:

        def wait_for(check, what: str) -> None:  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + 10
            while not check():
                assert time.monotonic() < deadline, what
                time.sleep(0.1)

        def versions(name: str) -> list[str]:
            r = httpx.get(f"{srv.url}/v2/models/{name}")
            return r.json()["versions"] if r.status_code == 200 else []

        affine_model(repo / "b" / "1")
        wait_for(lambda: versions("b") == ["1"], "new model b loaded")
        affine_model(repo / "a" / "2", shift=5.0)
        wait_for(lambda: versions("a") == ["2"], "version 2 of a loaded")
        out = httpx.post(f"{srv.url}/v2/models/a/infer", json=BODY).json()
        assert out["outputs"][0]["data"][0] == 7.0
        shutil.rmtree(repo / "b")
        wait_for(lambda: versions("b") == [], "b unloaded")


@pytest.mark.parametrize("path", ["v2", "predict"])
def test_a_client_that_leaves_while_its_request_decodes_is_not_run(tmp_path: Path, path: str) -> None:
    """Twenty-four callers send 16 long texts each to the transformer and leave 50 ms later, most while
    their texts are still being tokenised on the decoding pool. The connection's watch was set only once
    a request was queued, so those ran in full and were logged 200 (24 of 24); now a request whose client
    is gone when its decoding ends is never queued, and one still decoding is cancelled."""
    copy_shipped("sentiment", tmp_path / "models", version=2)
    long = " ".join(["this film is not bad at all but rather wonderful"] * 40)
    if path == "v2":
        body = orjson.dumps(
            {"inputs": [{"name": "t", "datatype": "BYTES", "shape": [16], "data": [long] * 16}]}
        )
        head = b"POST /v2/models/sentiment/infer HTTP/1.1\r\n"
    else:
        body = orjson.dumps({"texts": [long] * 16})
        head = b"POST /predict?model=sentiment HTTP/1.1\r\n"
    head += b"Host: x\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    callers = 24
    with run_server(tmp_path / "models", tmp_path) as srv:
        sockets = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(callers)]
        for s in sockets:
            s.sendall(head + body)
        time.sleep(0.05)
        for s in sockets:
            s.close()
        scrape = ""

        def answered() -> float:
            nonlocal scrape
            scrape = httpx.get(f"{srv.url}/metrics").text
            return sum(
                metric(
                    scrape,
                    "modelserve_requests_total",
                    model="sentiment",
                    version="2",
                    outcome=o,
                    protocol="http",
                )
                for o in ("success", "client_gone")
            )

        deadline = time.monotonic() + 120
        while answered() < callers:
            assert time.monotonic() < deadline, scrape
            time.sleep(0.2)
        gone = metric(
            scrape,
            "modelserve_requests_total",
            model="sentiment",
            version="2",
            outcome="client_gone",
            protocol="http",
        )
        assert gone >= callers / 2, f"{gone:.0f} of {callers} dropped"
        rows = httpx.get(f"{srv.url}/v2/models/sentiment/stats").json()["model_stats"][0]["inference_count"]
        assert rows <= 16 * callers / 2, f"{rows} rows ran for {callers} callers that left"
