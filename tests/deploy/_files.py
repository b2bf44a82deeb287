"""deploy/'s files as the tests read them: rules, Kubernetes objects, dashboard targets.

PyYAML (``yaml``) parses the YAML; it ships no type hints, hence the ignore below.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules_test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "focal-eval.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
KUBERNETES = DEPLOY / "kubernetes"
README = DEPLOY / "README.md"

VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")  # $name, ${name}, ${name:format}


def load_yaml(path: Path) -> Any:
    """The one YAML document in ``path``."""
    return parse_yaml(path.read_text())


def parse_yaml(text: str) -> Any:
    """The one YAML document in ``text``."""
    return yaml.safe_load(text)


def load_yaml_all(path: Path) -> list[Any]:
    """Every YAML document in ``path`` (``---``-separated)."""
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def rules() -> list[dict[str, Any]]:
    """Every rule of rules.yml, recording and alerting, in file order."""
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def manifests() -> dict[str, dict[str, Any]]:
    """Every object in deploy/kubernetes, by kind."""
    found = {
        document["kind"]: document
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for document in load_yaml_all(path)
    }
    assert set(found) == {"Deployment", "PodMonitor"}
    return found


def pod() -> dict[str, Any]:
    """The Deployment's pod template."""
    template: dict[str, Any] = manifests()["Deployment"]["spec"]["template"]
    return template


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard's JSON model."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


@dataclass(frozen=True)
class Target:
    """One query of one dashboard panel."""

    panel: str  # the panel's title
    ref: str  # its refId
    expr: str
    instant: bool

    @property
    def key(self) -> tuple[str, str]:
        """(panel title, refId): how the tests name it."""
        return self.panel, self.ref


def targets(model: dict[str, Any]) -> list[Target]:
    """The queries of every panel (rows hold none), in order."""
    return [
        Target(panel["title"], target["refId"], target["expr"], bool(target.get("instant")))
        for panel in model["panels"]
        for target in panel.get("targets", [])
    ]


def variables_used(text: str) -> set[str]:
    """The names of the template variables ``text`` refers to."""
    return {a or b for a, b in VARIABLE.findall(text)}


def substitute(text: str, values: dict[str, str]) -> str:
    """``text`` with each ``$name`` / ``${name}`` replaced by ``values[name]``."""
    return VARIABLE.sub(lambda match: values[match.group(1) or match.group(2)], text)
