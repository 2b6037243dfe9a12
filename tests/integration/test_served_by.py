"""MODELSERVE_REPLICA_NAME: every HTTP answer names the replica (X-Served-By), for clients behind a load
balancer (deploy/swarm, tests/cluster); unset, no such header."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import MODELS, Server, run_server


def test_the_replica_name_is_sent_on_every_answer(tmp_path: Path) -> None:
    env = {"MODELSERVE_REPLICA_NAME": "node-b/3"}
    with run_server(MODELS, tmp_path, env=env) as srv, httpx.Client(base_url=srv.url) as c:
        answers = [
            c.get("/v2/health/ready"),
            c.post("/predict?model=sentiment", json={"text": "a fine film"}),  # the fast path
            c.post("/predict?model=nope", json={"text": "x"}),  # an error answer too
            c.get("/metrics"),
        ]
    assert [a.status_code for a in answers] == [200, 200, 404, 200]
    assert [a.headers.get("x-served-by") for a in answers] == ["node-b/3"] * 4


def test_no_header_without_a_replica_name(server: Server) -> None:
    answer = httpx.get(f"{server.url}/v2/health/ready")
    assert answer.status_code == 200 and "x-served-by" not in answer.headers
