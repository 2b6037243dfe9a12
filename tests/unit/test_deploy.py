"""Deployment files: Kubernetes manifests against the Kubernetes schemas (offline), the KServe predictor's
container against the core Container schema, compose and Dockerfile essentials."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT

K8S_VERSION = "1.30.0"


def documents(path: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]


@pytest.mark.parametrize(
    "path",
    ["deploy/kubernetes/deployment.yaml", "deploy/kubernetes/service.yaml", "deploy/kubernetes/hpa.yaml"],
)
def test_kubernetes_manifests_validate(path: str) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_deployment_probes_drain_and_non_root() -> None:
    [deployment] = documents("deploy/kubernetes/deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert "preStop" in container["lifecycle"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"]["cpu"]


def test_kserve_inferenceservice_is_a_v2_custom_predictor() -> None:
    [isvc] = documents("deploy/kserve/inferenceservice.yaml")
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    [container] = isvc["spec"]["predictor"]["containers"]
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    # The custom container is a core Container: validate it inside a Pod.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [container]}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_grpc_port_is_declared_everywhere() -> None:
    """The gRPC port (h2c) reaches the cluster: Service, container port, KServe's own InferenceService."""
    [service] = documents("deploy/kubernetes/service.yaml")
    grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert grpc_port["appProtocol"] == "kubernetes.io/h2c" and grpc_port["targetPort"] == "grpc"
    [deployment] = documents("deploy/kubernetes/deployment.yaml")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "grpc", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    [isvc] = documents("deploy/kserve/inferenceservice-grpc.yaml")
    [predictor] = isvc["spec"]["predictor"]["containers"]
    assert predictor["ports"] == [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [predictor]}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    runtime = (ROOT / "Dockerfile").read_text().split("AS runtime", 1)[1]
    assert "EXPOSE 8080 8081" in runtime and "MODELSERVE_GRPC_PORT=8081" in runtime


def test_compose_file() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["modelserve"]
    assert service["ports"] == ["127.0.0.1:8080:8080", "127.0.0.1:8081:8081"]
    assert "healthcheck" in service and service["volumes"] == ["./models:/models:ro"]
    assert compose["services"]["prometheus"]["profiles"] == ["monitoring"]


def test_dockerfile_essentials() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "ARG BASE_IMAGE=python:3.11-slim" in text
    assert "python3 -m venv" in text and "FROM ${BASE_IMAGE}" in text
    stages = [line.split()[-1] for line in text.splitlines() if line.startswith("FROM ")]
    assert stages[-1] == "runtime" and "train" in stages  # a plain build gives the runtime
    runtime = text.split("AS runtime", 1)[1]
    assert "USER 10001" in runtime and "EXPOSE 8080" in runtime and "HEALTHCHECK" in runtime
    assert 'ENTRYPOINT ["modelserve", "serve"]' in runtime  # exec form: SIGTERM reaches the server
    assert "torch" not in runtime
