"""Over HTTP, with a deliberately slow real ONNX graph: a full queue answers 503, a request past its
timeout 504 (never run), a client that leaves is dropped; and repository polling."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_server
from tests.graphs import affine_model, slow_model, write_config
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
