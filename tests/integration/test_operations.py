"""What an operator relies on: metrics after known traffic, request ids, JSON logs, API keys, CORS,
SIGTERM draining with requests in flight, several workers."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODELS, run_server
from tests.graphs import copy_shipped, slow_model, write_config


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_known_traffic(tmp_path: Path, digit_png: Callable[[int], bytes]) -> None:
    with run_server(MODELS, tmp_path) as srv, httpx.Client(base_url=srv.url) as c:
        before = c.get("/metrics").text
        assert "modelserve_queue_depth" in before and "process_resident_memory_bytes" in before
        files = [("f", (f"{d}.png", digit_png(d), "image/png")) for d in range(8)]
        assert c.post("/predict?model=digits", files=files).status_code == 200  # one run of 8 rows
        for _ in range(3):
            assert c.post("/predict?model=sentiment", json={"text": "great"}).status_code == 200
        assert c.post("/predict?model=sentiment", json={"text": ""}).status_code == 422
        assert c.post("/predict?model=nope", json={"text": "x"}).status_code == 404
        v2 = {"inputs": [{"name": "ids", "datatype": "INT64", "shape": [8, 2], "data": [5, 6] * 8}]}
        assert c.post("/v2/models/sentiment/infer", json=v2).status_code == 200  # 8 rows, one run
        after = c.get("/metrics").text
    labels = {"model": "digits", "version": "1"}
    assert metric(after, "modelserve_requests_total", outcome="success", **labels) == 1
    assert metric(after, "modelserve_batch_size_bucket", le="4.0", **labels) == 0
    assert metric(after, "modelserve_batch_size_bucket", le="8.0", **labels) == 1
    assert metric(after, "modelserve_batch_size_sum", **labels) == 8
    assert metric(after, "modelserve_batch_runs_total", **labels) == 1
    assert metric(after, "modelserve_request_duration_seconds_count", **labels) == 1
    assert metric(after, "modelserve_inference_duration_seconds_count", **labels) == 1
    assert metric(after, "modelserve_queue_wait_seconds_count", **labels) == 1
    sent = {"model": "sentiment", "version": "1"}
    assert metric(after, "modelserve_requests_total", outcome="success", **sent) == 4
    assert metric(after, "modelserve_requests_total", outcome="invalid_input", **sent) == 1
    assert metric(after, "modelserve_requests_total", outcome="not_found", model="", version="") == 1
    assert metric(after, "modelserve_batch_size_sum", **sent) == 3 + 8  # the V2 batch of 8 is 8 rows
    assert metric(after, "modelserve_model_load_seconds", **sent) > 0


def test_concurrent_requests_share_runs(tmp_path: Path, digit_png: Callable[[int], bytes]) -> None:
    png = digit_png(5)
    with run_server(MODELS, tmp_path) as srv:

        async def main() -> None:
            async with httpx.AsyncClient(
                base_url=srv.url, timeout=30, limits=httpx.Limits(max_connections=64)
            ) as ac:
                rs = await asyncio.gather(
                    *(
                        ac.post("/predict?model=digits", content=png, headers={"content-type": "image/png"})
                        for _ in range(64)
                    )
                )
            assert all(r.status_code == 200 and r.json()["predictions"][0]["label"] == "5" for r in rs)

        asyncio.run(main())
        text = httpx.get(f"{srv.url}/metrics").text
    runs = metric(text, "modelserve_batch_runs_total", model="digits", version="1")
    assert metric(text, "modelserve_batch_size_sum", model="digits", version="1") == 64
    assert 0 < runs < 64


def test_request_id_round_trips_and_bad_ids_are_replaced(client: httpx.Client) -> None:
    r = client.get("/v2/health/live", headers={"X-Request-ID": "trace-7:abc.DEF_9"})
    assert r.headers["x-request-id"] == "trace-7:abc.DEF_9"
    for bad in ("has space", "x" * 129, "semi;colon"):
        rid = client.get("/v2/health/live", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert rid != bad and re.fullmatch(r"[0-9a-f]{32}", rid)
    assert re.fullmatch(r"[0-9a-f]{32}", client.post("/predict", json={"text": "ok"}).headers["x-request-id"])


def test_json_logs_one_access_line_per_request(tmp_path: Path, digit_png: Callable[[int], bytes]) -> None:
    env = {"MODELSERVE_LOG_FORMAT": "json", "MODELSERVE_LOG_LEVEL": "info"}
    with run_server(MODELS, tmp_path, env=env) as srv:
        r = httpx.post(
            f"{srv.url}/predict?model=digits",
            headers={"X-Request-ID": "log-test-1"},
            files=[("f", ("a.png", digit_png(1), "image/png")), ("g", ("b.png", digit_png(2), "image/png"))],
        )
        assert r.status_code == 200
        deadline = time.monotonic() + 30  # the access line is written after the answer: wait for it
        while '"log-test-1"' not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [json.loads(line) for line in srv.log().splitlines() if line.strip()]  # every line is JSON
    access = [x for x in lines if x.get("request_id") == "log-test-1"]
    assert len(access) == 1
    entry = access[0]
    assert entry["logger"] == "modelserve.access" and entry["status"] == 200
    assert (entry["model"], entry["version"], entry["rows"], entry["batch_size"]) == ("digits", "1", 2, 2)
    assert entry["latency_ms"] > 0 and entry["path"] == "/predict"


def test_api_keys_and_admin_key(tmp_path: Path) -> None:
    env = {"MODELSERVE_API_KEYS": "k1,k2", "MODELSERVE_ADMIN_KEY": "root"}
    with run_server(MODELS, tmp_path, env=env) as srv, httpx.Client(base_url=srv.url) as c:
        body = {"text": "I loved this film"}
        r = c.post("/predict", json=body)
        assert r.status_code == 401 and "missing API key" in r.json()["error"]
        assert r.headers["www-authenticate"] == "Bearer"
        assert c.post("/predict", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.post("/predict", json=body, headers={"Authorization": "Bearer k2"}).status_code == 200
        assert c.post("/predict", json=body, headers={"X-API-Key": "k1"}).status_code == 200
        assert c.get("/v2/models/digits").status_code == 401
        # Health and metrics stay open; the repository needs the admin key, not an inference key.
        assert c.get("/v2/health/ready").status_code == 200 and c.get("/metrics").status_code == 200
        r = c.post("/v2/repository/index", headers={"X-API-Key": "k1"})
        assert r.status_code == 403 and "admin key" in r.json()["error"]
        assert c.post("/v2/repository/index").status_code == 401
        assert c.post("/v2/repository/index", headers={"Authorization": "Bearer root"}).status_code == 200
        assert c.post("/predict", json=body, headers={"X-API-Key": "root"}).status_code == 200
    with run_server(
        MODELS, tmp_path, env={"MODELSERVE_API_KEYS": "k1", "MODELSERVE_AUTH_METRICS": "true"}
    ) as srv:
        assert httpx.get(f"{srv.url}/metrics").status_code == 401
        r = httpx.post(f"{srv.url}/v2/repository/index", headers={"X-API-Key": "k1"})
        assert r.status_code == 403 and "MODELSERVE_ADMIN_KEY" in r.json()["error"]


def test_cors_is_off_by_default_and_configurable(client: httpx.Client, tmp_path: Path) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/predict", headers=preflight).headers
    with run_server(MODELS, tmp_path, env={"MODELSERVE_CORS_ORIGINS": "https://app.example"}) as srv:
        r = httpx.options(f"{srv.url}/predict", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://app.example"


def in_the_batcher(url: str, model: str) -> tuple[float, float]:
    """(answered, taken in) of a model's batchers so far, all workers: taken in counts the answered, the
    running and the queued."""
    scrape = httpx.get(f"{url}/metrics", timeout=30).text
    labels = {"model": model, "version": "1"}
    answered = metric(scrape, "modelserve_request_duration_seconds_count", **labels)
    waiting = metric(scrape, "modelserve_in_flight", **labels) + metric(
        scrape, "modelserve_queue_depth", **labels
    )
    return answered, answered + waiting


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_drains_64_requests_in_flight_and_exits_0(tmp_path: Path, workers: str) -> None:
    repo = tmp_path / "models"
    slow_model(repo / "slow" / "1", matmuls=16)  # about 0.1 s a run
    write_config(repo / "slow", max_batch_size=4)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    # The readiness check below must land inside the delay: it is sent right after SIGTERM, and the delay
    # leaves a busy machine seconds to do it. The queue's and the drain's time limits are out of the way:
    # on a busy machine 16 runs can take longer than their 30 s defaults, and this test is about draining.
    env = {
        "MODELSERVE_SHUTDOWN_DELAY_S": "4",
        "MODELSERVE_WORKERS": workers,
        "MODELSERVE_TIMEOUT_S": "280",
        "MODELSERVE_DRAIN_TIMEOUT_S": "280",
    }
    with run_server(repo, tmp_path, env=env) as srv:

        async def main() -> tuple[list[httpx.Response], int, tuple[float, float]]:
            async with httpx.AsyncClient(
                base_url=srv.url, timeout=300, limits=httpx.Limits(max_connections=70)
            ) as ac:  # 64 connections: with 2 workers, both hold some of them
                tasks = [asyncio.create_task(ac.post("/v2/models/slow/infer", json=body)) for _ in range(64)]
                # All 64 taken in (a few answered, most queued), counted from the metrics, not slept for.
                deadline = time.monotonic() + 120
                while (counts := in_the_batcher(srv.url, "slow"))[1] < 64 and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                srv.process.send_signal(signal.SIGTERM)
                # Readiness turns false once the signal has reached the worker (the supervisor forwards
                # it): ask until it says so, within the shutdown delay, while the listener still answers.
                readiness = [(await ac.get("/v2/health/ready")).status_code]
                while readiness[-1] == 200 and len(readiness) < 1000:
                    await asyncio.sleep(0.002)
                    readiness.append((await ac.get("/v2/health/ready")).status_code)
                return await asyncio.gather(*tasks), readiness, counts

        responses, readiness, (answered, taken) = asyncio.run(main())
        assert srv.process.wait(timeout=300) == 0
    assert taken == 64 and answered < 64  # all in, and some still to answer when SIGTERM came
    assert readiness[-1] == 503 and set(readiness[:-1]) <= {200}, readiness
    assert [r.status_code for r in responses] == [200] * 64


def test_two_workers_serve(tmp_path: Path, digit_png: Callable[[int], bytes]) -> None:
    copy_shipped("digits", tmp_path / "models")
    with run_server(tmp_path / "models", tmp_path, env={"MODELSERVE_WORKERS": "2"}) as srv:
        for _ in range(6):
            r = httpx.post(f"{srv.url}/predict", content=digit_png(9), headers={"content-type": "image/png"})
            assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "9"
        # A load reaches every worker (tests/integration/test_workers.py has the rest).
        assert httpx.post(f"{srv.url}/v2/repository/models/digits/load").status_code == 200
