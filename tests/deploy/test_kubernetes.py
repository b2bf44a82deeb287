"""deploy/kubernetes: the sidecar's pod, its scrape annotations and PodMonitor agree.

The port Prometheus scrapes is named four ways (FOCAL_PORT, the container port, the
prometheus.io/port annotation, the PodMonitor's port name) and its path two (the annotation,
the PodMonitor); the probes ask the same port. The server must listen on every interface
of the pod. test_live.py checks that the path serves the metrics.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.deploy._files import (
    PROMETHEUS_CONFIG,
    README,
    REPO,
    RULES,
    load_yaml,
    manifests,
    parse_yaml,
    pod,
)

SIDECAR = "focal-eval"


def sidecar() -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod()["spec"]["containers"]
    (container,) = (c for c in containers if c["name"] == SIDECAR)
    return container


def env(container: dict[str, Any]) -> dict[str, str]:
    return {variable["name"]: variable["value"] for variable in container.get("env", [])}


def image_env() -> dict[str, str]:
    """The ENV of the image the Dockerfile builds (``ENV A=1 \\ B=2``)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return dict(re.findall(r"(FOCAL_\w+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", text, re.M))))


def metrics_port() -> dict[str, Any]:
    ports: list[dict[str, Any]] = sidecar()["ports"]
    (port,) = ports
    return port


def test_manifests_parse_as_kubernetes_objects() -> None:
    for kind, document in manifests().items():
        assert document["apiVersion"] in {"apps/v1", "monitoring.coreos.com/v1"}, kind
        assert document["metadata"]["name"], kind


def test_deployment_selects_its_own_pods() -> None:
    deployment = manifests()["Deployment"]
    selected = deployment["spec"]["selector"]["matchLabels"]
    assert selected.items() <= pod()["metadata"]["labels"].items()


def test_focal_port_is_the_container_port_and_the_annotated_port() -> None:
    port = metrics_port()
    assert int(env(sidecar())["FOCAL_PORT"]) == port["containerPort"]
    assert pod()["metadata"]["annotations"]["prometheus.io/port"] == str(port["containerPort"])
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?", port["name"])  # IANA_SVC_NAME


def test_the_sidecar_listens_on_the_pod_address() -> None:
    host = env(sidecar()).get("FOCAL_HOST", image_env()["FOCAL_HOST"])
    assert host == "0.0.0.0"  # 127.0.0.1 would hide it from Prometheus and the kubelet


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_probes_ask_the_metrics_port(probe: str) -> None:
    port = metrics_port()
    asked = sidecar()[probe]["httpGet"]
    assert asked["port"] in {port["containerPort"], port["name"]}
    assert asked["path"] in {"/v2/health/ready", "/v2/health/live", "/healthz"}


def test_pod_monitor_scrapes_the_annotated_port_and_path_of_these_pods() -> None:
    spec = manifests()["PodMonitor"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= pod()["metadata"]["labels"].items()
    (endpoint,) = spec["podMetricsEndpoints"]
    annotations = pod()["metadata"]["annotations"]
    assert endpoint["port"] == metrics_port()["name"]
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/scrape"] == "true"


def relabel(labels: dict[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus' ``keep`` / ``replace`` relabelling (anchored regexes); None if dropped."""
    labels = dict(labels)
    for config in configs:
        sources = [labels.get(name, "") for name in config["source_labels"]]
        value = config.get("separator", ";").join(sources)
        match = re.fullmatch(config.get("regex", "(.*)"), value)
        action = config.get("action", "replace")
        if action == "keep":
            if match is None:
                return None
        elif action == "replace":
            if match is not None:
                replacement = re.sub(r"\$(\d+)", r"\\\1", config.get("replacement", "$1"))
                labels[config["target_label"]] = match.expand(replacement)
        else:
            raise AssertionError(f"relabel action {action} is not simulated")
    return labels


def discovered(annotations: dict[str, str], address: str) -> dict[str, str]:
    """The labels Kubernetes discovery gives one of the pod's targets."""
    sanitized = {
        "__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", key): value
        for key, value in annotations.items()
    }
    return {
        "__address__": address,
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_namespace": "default",
        "__meta_kubernetes_pod_name": "my-model-0",
        **sanitized,
    }


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("10.1.2.3", id="container-without-ports"),
        pytest.param("10.1.2.3:9100", id="metrics-port"),
        pytest.param("10.1.2.3:8080", id="other-port"),
    ],
)
def test_annotation_scrape_job_finds_the_sidecar(address: str) -> None:
    (job,) = load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]
    annotations = pod()["metadata"]["annotations"]
    target = relabel(discovered(annotations, address), job["relabel_configs"])
    assert target is not None
    assert target["__address__"] == f"10.1.2.3:{metrics_port()['containerPort']}"
    assert target["__metrics_path__"] == annotations["prometheus.io/path"]
    assert (target["namespace"], target["pod"]) == ("default", "my-model-0")
    unannotated = relabel(discovered({}, address), job["relabel_configs"])
    assert unannotated is None


def test_example_prometheus_config_loads_the_rules() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert [PROMETHEUS_CONFIG.parent / path for path in config["rule_files"]] == [RULES]


def test_readme_recipe_wraps_the_rules_in_a_prometheus_rule() -> None:
    (recipe,) = re.findall(r"^    (\{ printf .*\| kubectl apply -f -)$", README.read_text(), re.M)
    shell = recipe.removesuffix("| kubectl apply -f -")
    made = subprocess.run(
        ["bash", "-c", shell], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
    )
    resource = parse_yaml(made.stdout)
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"] == load_yaml(RULES)
