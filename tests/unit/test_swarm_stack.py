"""deploy/swarm: what the stack promises (tests/cluster runs it for real where dockerd can run; this checks
the file everywhere): replicas on HTTP and gRPC in dnsrr mode, start-first updates that roll back, a stop
grace period longer than the drain, HAProxy checking readiness, Prometheus finding every replica."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.conftest import ROOT

SWARM = ROOT / "deploy" / "swarm"


def stack() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SWARM / "stack.yml").read_text())
    return doc


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return float(match.group(1))


def test_replicas_update_start_first_roll_back_and_outlast_the_drain() -> None:
    service = stack()["services"]["modelserve"]
    deploy = service["deploy"]
    assert deploy["endpoint_mode"] == "dnsrr"
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert deploy["restart_policy"]["condition"] == "any"
    assert deploy["resources"]["limits"]["cpus"] and deploy["resources"]["limits"]["memory"]
    env = service["environment"]
    drain = float(env["MODELSERVE_SHUTDOWN_DELAY_S"]) + float(env["MODELSERVE_DRAIN_TIMEOUT_S"])
    assert seconds(service["stop_grace_period"]) > drain
    assert env["MODELSERVE_WORKERS"] == "1"
    assert env["MODELSERVE_REPLICA_NAME"] == "{{.Node.Hostname}}/{{.Task.Slot}}"
    assert env["MODELSERVE_MODELS_DIR"].endswith("s3://models/}")  # the store by default
    assert env["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert "/v2/health/ready" in " ".join(service["healthcheck"]["test"])


def test_every_service_avoids_the_routing_mesh() -> None:
    for name, service in stack()["services"].items():
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name
        for port in service.get("ports", []):
            assert port["mode"] == "host", (name, port)


def test_haproxy_checks_readiness_and_passes_grpc_as_h2c() -> None:
    cfg = (SWARM / "haproxy" / "haproxy.cfg").read_text()
    assert "nameserver dns 127.0.0.11:53" in cfg
    assert "option httpchk GET /v2/health/ready" in cfg
    assert "http-check connect port 8080 proto h1" in cfg  # gRPC servers: checked on the HTTP port
    assert "http-check send meth GET uri /v2/health/ready" in cfg
    assert 'server-template ms 10 "tasks.${MODELSERVE_SERVICE}:8080"' in cfg
    assert re.search(r"bind :8081 proto h2\n", cfg)
    assert re.search(r'server-template grpc 10 "tasks\.\$\{MODELSERVE_SERVICE\}:8081" proto h2\n', cfg)
    assert stack()["services"]["haproxy"]["environment"]["MODELSERVE_SERVICE"] == "modelserve"


def test_prometheus_finds_the_replicas_through_dns() -> None:
    config = yaml.safe_load((SWARM / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "modelserve"]
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["tasks.modelserve"] and sd["port"] == 8080 and sd["type"] == "A"
