"""deploy/prometheus/rules.yml: promtool's checks and unit tests, and what every rule carries."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.deploy._files import RULES, RULES_TEST, load_yaml, rules
from tests.system import require

NAME = re.compile(r"^(source|source_class|route):focal_eval_\w+:\w+$")  # level:metric:operations


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require("promtool", "prometheus", "apt-get install prometheus")
    return subprocess.run(
        [binary, *args],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_promtool_check_rules_passes() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_promtool_unit_tests_pass() -> None:
    tested = promtool("test", "rules", RULES_TEST.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_recording_rule_is_unit_tested() -> None:
    tested = " ".join(
        check["expr"]
        for case in load_yaml(RULES_TEST)["tests"]
        for check in case.get("promql_expr_test", [])
    )
    untested = [r["record"] for r in rules() if "record" in r and r["record"] not in tested]
    assert not untested


@pytest.mark.parametrize("alert", [r["alert"] for r in rules() if "alert" in r])
def test_every_alert_is_unit_tested_firing_and_silent(alert: str) -> None:
    checks = [
        check
        for case in load_yaml(RULES_TEST)["tests"]
        for check in case.get("alert_rule_test", [])
        if check["alertname"] == alert
    ]
    assert any(check.get("exp_alerts") for check in checks), "never seen firing"
    assert any(not check.get("exp_alerts") for check in checks), "never seen silent"


def test_rule_names_follow_the_prometheus_convention() -> None:
    records = [r["record"] for r in rules() if "record" in r]
    assert len(set(records)) == len(records)
    assert [name for name in records if not NAME.match(name)] == []
    alerts = [r["alert"] for r in rules() if "alert" in r]
    assert len(set(alerts)) == len(alerts)
    assert all(name.startswith("FocalEval") for name in alerts)


@pytest.mark.parametrize("alert", [r for r in rules() if "alert" in r], ids=lambda r: r["alert"])
def test_every_alert_has_a_severity_and_says_its_threshold(alert: dict[str, Any]) -> None:
    assert alert["labels"]["severity"] in {"warning", "critical"}
    annotations = alert["annotations"]
    assert set(annotations) == {"summary", "description"}
    # the description states the window and the threshold that the expression tests
    assert re.search(r"\d+ minutes|hour", annotations["description"])
    for number in re.findall(r"(?<![\w.])(0\.\d+|\d+)(?![\w.])", alert["expr"]):
        if number in {"0", "1"} or (number == "3600" and "* 3600" in alert["expr"]):
            continue
        shown = {"0.7": "70%", "0.9": "10%", "0.5": "half", "0.05": "5%"}.get(number, number)
        assert shown in annotations["description"], number
