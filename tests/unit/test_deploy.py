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


def test_kserve_storage_uri_form_validates_and_serves_the_downloaded_folder() -> None:
    """KServe's storage initializer fetches storageUri into /mnt/models; the runtime serves that folder.
    The Secret and ServiceAccount validate as core objects, the runtime's container as a core Container."""
    docs = {d["kind"] + ("-polled" if "polled" in d["metadata"]["name"] else ""): d for d in
            documents("deploy/kserve/inferenceservice-s3.yaml")}  # fmt: skip
    for kind in ("Secret", "ServiceAccount"):
        kubernetes_validate.validate(docs[kind], K8S_VERSION, strict=True)
    secret = docs["Secret"]
    assert {"serving.kserve.io/s3-endpoint", "serving.kserve.io/s3-region"} <= set(
        secret["metadata"]["annotations"]
    )
    assert docs["ServiceAccount"]["secrets"] == [{"name": secret["metadata"]["name"]}]
    isvc = docs["InferenceService"]
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["storageUri"].startswith("s3://")
    assert predictor["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    runtime = docs["ServingRuntime"]
    assert predictor["model"]["runtime"] == runtime["metadata"]["name"]
    assert predictor["model"]["modelFormat"]["name"] in [
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    ]
    [container] = runtime["spec"]["containers"]
    assert container["args"][container["args"].index("--models") + 1] == "/mnt/models"
    polled = docs["InferenceService-polled"]
    [own] = polled["spec"]["predictor"]["containers"]
    env = {e["name"]: e for e in own["env"]}
    assert env["MODELSERVE_MODELS_DIR"]["value"].startswith("s3://") and "AWS_ENDPOINT_URL" in env
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    for each in (container, own):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [each]}}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_queue_hpa_reads_metrics_the_adapter_makes_from_metrics_the_service_exports() -> None:
    """The HPA validates; every Pods metric it names is one the adapter's rules expose ("as"), and every
    rule's series is one service/metrics.py exports (a renamed metric breaks this test, not the cluster)."""
    from prometheus_client import CollectorRegistry

    from service.metrics import Metrics

    [hpa] = documents("deploy/kubernetes/queue-autoscaling/hpa.yaml")
    kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)
    [config_map] = documents("deploy/kubernetes/queue-autoscaling/prometheus-adapter-rules.yaml")
    kubernetes_validate.validate(config_map, K8S_VERSION, strict=True)
    rules = yaml.safe_load(config_map["data"]["config.yaml"])["rules"]
    exposed = {rule["name"]["as"]: rule for rule in rules}
    wanted = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert wanted and set(wanted) <= set(exposed), (wanted, sorted(exposed))
    registry = CollectorRegistry()
    Metrics(registry)
    families = {family.name: family.type for family in registry.collect()}
    exported = set(families) | {f"{name}_bucket" for name, kind in families.items() if kind == "histogram"}
    for rule in rules:
        series = rule["seriesQuery"].split("{")[0]
        assert series in exported, series
        assert {"namespace", "pod"} <= set(rule["resources"]["overrides"]), rule
        assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]
    # The same Deployment as the CPU HPA it replaces (same name: applying it updates that object).
    [cpu_hpa] = documents("deploy/kubernetes/hpa.yaml")
    assert hpa["metadata"]["name"] == cpu_hpa["metadata"]["name"]
    assert hpa["spec"]["scaleTargetRef"] == cpu_hpa["spec"]["scaleTargetRef"]
