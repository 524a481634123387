"""The Kubernetes manifests under deploy/k8s/ validate against the Kubernetes
schemas (kubernetes-validate, offline, strict: unknown fields fail), and the
ServiceMonitor, a custom resource those schemas lack, against its own."""

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
"""The oldest version we claim: gRPC probes are stable since 1.27."""


def documents():
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text())]
    return found


def by_kind(kind):
    return [doc for _, doc in documents() if doc["kind"] == kind]


def test_the_set_of_resources_is_complete():
    kinds = sorted(doc["kind"] for _, doc in documents())
    assert kinds == [
        "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "Service", "Service", "ServiceMonitor",
    ]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        {name for name, _ in documents()}
    )


@pytest.mark.parametrize(
    "name, doc",
    [(n, d) for n, d in documents() if d["kind"] != "ServiceMonitor"],
    ids=lambda value: value if isinstance(value, str) else value["kind"],
)
def test_builtin_resources_validate_strictly(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field():
    deployment = copy.deepcopy(by_kind("Deployment")[0])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readynessProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_probes_use_grpc_health_on_the_plaintext_health_port():
    deployment = by_kind("Deployment")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["ALQUERY_HEALTH_PORT"] == str(ports["health"])
    assert env["ALQUERY_PORT"] == str(ports["grpc"])
    assert env["ALQUERY_METRICS_PORT"] == str(ports["metrics"])
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert readiness["grpc"] == {
        "port": ports["health"], "service": "alquery.v1.QueryService"
    }
    assert liveness["grpc"]["port"] == ports["health"]
    grace = float(env["ALQUERY_GRACE_SECONDS"])
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > grace


def test_selectors_match_the_pod_labels():
    labels = by_kind("Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    selectors = [svc["spec"]["selector"] for svc in by_kind("Service")]
    selectors += [by_kind("PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"]]
    for selector in selectors:
        assert selector.items() <= labels.items()
    headless = [s for s in by_kind("Service") if s["spec"].get("clusterIP") == "None"]
    assert len(headless) == 1
    target = by_kind("HorizontalPodAutoscaler")[0]["spec"]["scaleTargetRef"]
    assert target["name"] == by_kind("Deployment")[0]["metadata"]["name"]


DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DURATION = "^[0-9]+(ms|s|m|h)$"
STRING = {"type": "string"}
# The part of the Prometheus Operator's ServiceMonitor CRD (v1) we use,
# written from its API reference; anything else is refused.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": DNS_LABEL},
                "labels": {"type": "object", "additionalProperties": STRING},
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scheme": {"enum": ["http", "https"]},
                        },
                    },
                },
            },
        },
    },
}


def test_service_monitor_matches_its_schema_and_the_service():
    monitor = by_kind("ServiceMonitor")[0]
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    service = next(s for s in by_kind("Service") if s["metadata"]["name"] == "alquery")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports

    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SERVICE_MONITOR_SCHEMA)
