"""``deploy/k8s`` offline: every resource against the Kubernetes API schemas that the
``kubernetes-validate`` package ships (no network, no cluster), strictly (unknown fields are
errors), then what the deployment relies on: probes, replicas, the disruption budget, stable
consumer names, secrets as placeholders only, the network policy."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.support import DEPLOY, k8s_documents

K8S_VERSION = "1.30.0"
#: Kinds without a schema in kubernetes-validate (checked structurally below).
NOT_CORE = {"Kustomization", "ServiceMonitor"}


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize(("path", "doc"), [
    pytest.param(path, doc, id=f"{path.name}:{doc['kind']}/{doc['metadata'].get('name', '')}")
    for path, doc in k8s_documents() if doc["kind"] not in NOT_CORE])
def test_resource_is_valid_against_the_api_schema(path: Path, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validation_can_fail() -> None:
    daemon = copy.deepcopy(named("Deployment", "orchestrator-daemon"))
    daemon["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemon, K8S_VERSION, strict=True)
    daemon["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemon, K8S_VERSION, strict=False)


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return found


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_daemon_has_two_replicas_probes_a_budget_and_stable_consumer_names() -> None:
    daemon = named("Deployment", "orchestrator-daemon")
    assert daemon["spec"]["replicas"] == 2
    (container,) = containers(daemon)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"]
    env = env_of(container)
    assert env["ORCHESTRATOR_CONSUMER_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["ORCHESTRATOR_DAEMON_KEY_FILE"].startswith("/run/secrets/")
    pdb = named("PodDisruptionBudget", "orchestrator-daemon")
    assert pdb["spec"]["minAvailable"] == 1
    labels = daemon["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_workers_have_stable_names_and_probes() -> None:
    sets = by_kind("StatefulSet")
    assert {s["metadata"]["name"] for s in sets} == {"orchestrator-server", "orchestrator-client"}
    worker_urls = named("Secret", "orchestrator-worker-redis")["stringData"]
    for workload in sets:
        (container,) = containers(workload)
        assert '--name "$POD_NAME"' in container["args"][0]
        assert env_of(container)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for ordinal in range(workload["spec"]["replicas"]):
            pod = f"{workload['metadata']['name']}-{ordinal}"
            assert worker_urls[pod].startswith(f"redis://worker-{pod}:"), pod


def test_every_pod_runs_unprivileged_from_a_pinned_image() -> None:
    for kind in ("Deployment", "StatefulSet", "Job"):
        for workload in by_kind(kind):
            pod = workload["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in pod["containers"]:
                image = container["image"]
                assert ":" in image and not image.endswith(":latest"), image
                assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_secrets_hold_placeholders_only() -> None:
    for secret in by_kind("Secret"):
        for key, value in secret.get("stringData", {}).items():
            assert "CHANGE-ME" in value, f"{secret['metadata']['name']}/{key} looks real"
        assert "data" not in secret


def test_network_policy_and_the_optional_service_monitor() -> None:
    (policy,) = by_kind("NetworkPolicy")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ports == [9464]
    (monitor,) = by_kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    service_ports = {p["name"] for s in by_kind("Service") for p in s["spec"]["ports"]}
    assert "metrics" in service_ports


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = by_kind("Kustomization")
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
