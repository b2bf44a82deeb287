"""deploy/grafana: the dashboard's JSON model and the provisioning files, read statically.

tests/deploy/test_live.py runs every query against a real Prometheus.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy._files import (
    DASHBOARD,
    PROVISIONING,
    dashboard,
    load_yaml,
    targets,
    variables_used,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
BUILTIN = {"__rate_interval", "__interval", "__range"}  # Grafana's own variables
GRID_WIDTH = 24


def walk_strings(value: Any) -> list[str]:
    """Every string inside a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in walk_strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in walk_strings(item)]
    return []


def test_dashboard_is_a_current_grafana_model() -> None:
    model = json.loads(DASHBOARD.read_text())  # valid JSON
    assert model["schemaVersion"] >= 39
    assert model["uid"] == "focal-eval"
    assert model["title"]
    assert "id" not in model  # Grafana assigns it; a fixed one clashes on import
    assert "__inputs" not in model  # file provisioning cannot fill them: a variable does


def test_variables_are_the_datasource_source_class_and_window() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert list(variables) == ["datasource", "source", "class", "window"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, query in (
        ("source", "label_values(focal_eval_samples_total, source)"),
        ("class", 'label_values(focal_eval_class_samples_total{source=~"$source"}, class)'),
    ):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["definition"] == variables[name]["query"]["query"] == query
        assert variables[name]["multi"]
        assert variables[name]["includeAll"]
    assert variables["window"]["type"] == "interval"
    assert variables["window"]["current"]["value"] in variables["window"]["query"].split(",")


def test_every_variable_used_is_defined() -> None:
    model = dashboard()
    defined = {v["name"] for v in model["templating"]["list"]}
    used = {name for text in walk_strings(model) for name in variables_used(text)}
    assert used - defined - BUILTIN == set()
    assert defined - used == set()  # and every one defined is used


def test_every_panel_queries_the_datasource_variable() -> None:
    panels = dashboard()["panels"]
    assert {p["type"] for p in panels} >= {"timeseries", "heatmap", "barchart", "row"}
    for panel in panels:
        if panel["type"] == "row":  # layout only: holds no query
            assert "targets" not in panel
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["description"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]


def test_panels_have_unique_ids_and_titles_and_fit_the_grid() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = [p["title"] for p in panels]
    assert len(set(titles)) == len(titles)  # tests name queries by title
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_no_query_mixes_the_quality_window_and_the_rate_interval() -> None:
    for target in targets(dashboard()):
        used = variables_used(target.expr)
        assert not {"window", "__rate_interval"} <= used, target.key


def test_recall_heatmap_takes_rows_from_series_and_shows_recall_zero() -> None:
    (panel,) = (p for p in dashboard()["panels"] if p["type"] == "heatmap")
    options = panel["options"]
    assert options["calculate"] is False  # each series (source, class) is a row
    assert options["filterValues"]["le"] < 0  # Grafana's default (1e-9) hides recall 0
    assert (options["color"]["min"], options["color"]["max"]) == (0, 1)
    (target,) = panel["targets"]
    assert target["legendFormat"] == "{{source}} {{class}}"  # not numeric: ordinal rows


@pytest.mark.parametrize("kind", ["datasources", "dashboards"])
def test_provisioning_files_are_grafana_version_1(kind: str) -> None:
    (path,) = (PROVISIONING / kind).iterdir()
    assert load_yaml(path)["apiVersion"] == 1


def test_provisioned_datasource_is_a_prometheus_the_dashboard_accepts() -> None:
    (path,) = (PROVISIONING / "datasources").iterdir()
    (datasource,) = load_yaml(path)["datasources"]
    variable = dashboard()["templating"]["list"][0]
    assert datasource["type"] == variable["query"] == "prometheus"
    assert datasource["url"].startswith("http")
    assert datasource["access"] == "proxy"


def test_provisioned_dashboards_provider_reads_a_folder_of_files() -> None:
    (path,) = (PROVISIONING / "dashboards").iterdir()
    (provider,) = load_yaml(path)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
