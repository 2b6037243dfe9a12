"""Several worker processes behave as one server: logs, one /metrics scrape, the repository API, readiness,
supervision (kill -9, SIGTERM). Each fresh connection lands on a worker the kernel picks (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, run_server
from tests.graphs import affine_model, copy_shipped, slow_model, write_config
from tests.integration.test_operations import metric

pytestmark = pytest.mark.slow

TWO = {"MODELSERVE_WORKERS": "2"}
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


def worker_pids(srv: Server) -> list[int]:
    children = Path(f"/proc/{srv.process.pid}/task/{srv.process.pid}/children").read_text().split()
    return sorted(int(p) for p in children)


def fresh(srv: Server, method: str, path: str, **kw: object) -> httpx.Response:
    """One request on a new connection (so on whichever worker the kernel picks)."""
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        return c.request(method, path, **kw)  # type: ignore[arg-type]


def test_every_worker_logs_and_one_scrape_counts_all_requests(
    tmp_path: Path, digit_png: Callable[[int], bytes]
) -> None:
    copy_shipped("digits", tmp_path / "models")
    env = {**TWO, "MODELSERVE_LOG_FORMAT": "json", "MODELSERVE_LOG_LEVEL": "info"}
    n = 40
    with run_server(tmp_path / "models", tmp_path, env=env) as srv:
        for i in range(n):
            r = fresh(
                srv, "POST", "/predict", content=digit_png(i % 10), headers={"content-type": "image/png"}
            )
            assert r.status_code == 200 and r.json()["predictions"][0]["label"] == str(i % 10)
        assert fresh(srv, "POST", "/predict?model=nope", json={"text": "x"}).status_code == 404
        scrape = fresh(srv, "GET", "/metrics").text
        log = srv.log()
    digits = {"model": "digits", "version": "1"}
    assert metric(scrape, "modelserve_requests_total", outcome="success", **digits) == n
    assert metric(scrape, "modelserve_request_duration_seconds_count", **digits) == n
    assert metric(scrape, "modelserve_batch_size_sum", **digits) == n
    assert metric(scrape, "modelserve_requests_total", outcome="not_found", model="", version="") == 1
    assert metric(scrape, "modelserve_workers") == 2
    assert metric(scrape, "modelserve_queue_depth", **digits) == 0
    per_worker = [line for line in scrape.splitlines() if line.startswith("modelserve_worker_resident")]
    assert len(per_worker) == 2
    total = metric(scrape, "modelserve_resident_memory_bytes")
    assert total == sum(float(line.rsplit(" ", 1)[1]) for line in per_worker) > 0
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [d for d in lines if d["logger"] == "modelserve.access" and d.get("model") == "digits"]
    assert len(access) == n
    assert {d["worker"] for d in access} == {"w0", "w1"}  # both served, both logged
    assert any(d["worker"] == "supervisor" for d in lines)
    assert all("worker" in d for d in lines)


def test_load_and_unload_reach_every_worker_and_readiness_covers_all(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    affine_model(repo / "affine" / "1")
    affine_model(repo / "other" / "1")
    with run_server(repo, tmp_path, env=TWO) as srv:
        assert fresh(srv, "POST", "/v2/repository/models/affine/unload").status_code == 200
        for _ in range(12):  # every worker answers as one
            assert fresh(srv, "POST", "/v2/models/affine/infer", json=BODY).status_code == 404
        assert fresh(srv, "GET", "/v2/health/ready").json()["models"] == ["other"]
        # A worker that starts now (a replacement) leaves the unloaded model unloaded too.
        os.kill(worker_pids(srv)[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while fresh(srv, "GET", "/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for _ in range(12):
            assert fresh(srv, "POST", "/v2/models/affine/infer", json=BODY).status_code == 404
        assert fresh(srv, "POST", "/v2/repository/models/affine/load").status_code == 200
        for _ in range(12):
            assert fresh(srv, "POST", "/v2/models/affine/infer", json=BODY).status_code == 200
        r = fresh(srv, "POST", "/v2/repository/models/nope/load")
        assert r.status_code == 404 and "no model folder" in r.json()["error"]
        # A stopped worker makes the server not ready, and the others say which one.
        stopped = worker_pids(srv)[1]
        os.kill(stopped, signal.SIGSTOP)
        try:
            answers = []
            for _ in range(12):
                try:
                    answers.append(httpx.get(f"{srv.url}/v2/health/ready", timeout=5))
                except httpx.TimeoutException:
                    continue  # this connection landed on the stopped worker
            assert answers and all(r.status_code == 503 for r in answers)
            assert all("worker" in r.json()["error"] for r in answers)
        finally:
            os.kill(stopped, signal.SIGCONT)
        assert fresh(srv, "GET", "/v2/health/ready").status_code == 200


def test_a_killed_worker_is_replaced_its_requests_fail_fast_and_the_others_go_on(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    # About 0.3 s a run, one request per run: each worker has ~3.6 s of work queued, so the kill at 0.5 s
    # always finds requests in the victim's queue (at 0.1 s a run a quiet machine had answered all 24 by then).
    slow_model(repo / "slow" / "1", matmuls=48)
    write_config(repo / "slow", max_batch_size=1)
    with run_server(repo, tmp_path, env=TWO) as srv:
        before = fresh(srv, "GET", "/metrics").text
        victim = worker_pids(srv)[0]

        async def one() -> tuple[int, float]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as ac:  # its own connection
                try:
                    return (await ac.post("/v2/models/slow/infer", json=BODY)).status_code, 0.0
                except httpx.TimeoutException:
                    return -2, 0.0  # a hang: what must not happen
                except httpx.TransportError:
                    return -1, time.monotonic() - killed  # its worker died under it: a reset

        async def main() -> list[tuple[int, float]]:
            nonlocal killed
            tasks = [asyncio.create_task(one()) for _ in range(24)]
            await asyncio.sleep(0.5)
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            return list(await asyncio.gather(*tasks))

        killed = 0.0
        results = asyncio.run(main())
        codes = [c for c, _ in results]
        assert set(codes) <= {200, -1} and codes.count(200) >= 1 and -1 in codes, codes
        assert all(after_kill < 5 for c, after_kill in results if c == -1)  # failed at once, not at a timeout
        deadline = time.monotonic() + 30
        while victim in worker_pids(srv) or len(worker_pids(srv)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for _ in range(8):
            assert fresh(srv, "POST", "/v2/models/slow/infer", json=BODY).status_code == 200
        after = fresh(srv, "GET", "/metrics").text
    assert metric(after, "modelserve_worker_restarts_total") == 1
    assert metric(after, "modelserve_workers") == 2
    slow = {"model": "slow", "version": "1", "outcome": "success"}
    # The dead worker's counts stay in the sum: counters never go back.
    assert metric(after, "modelserve_requests_total", **slow) >= codes.count(200) + 8
    assert metric(after, "modelserve_batch_runs_total", model="slow", version="1") >= metric(
        before, "modelserve_batch_runs_total", model="slow", version="1"
    )
    assert "killed by signal 9" in srv.log()
