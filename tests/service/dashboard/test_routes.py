"""``/dashboard`` and its assets: served by the app, under the policy, protected like /summary."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from focal_eval.service.app import create_app
from focal_eval.service.core.settings import Settings

TOKEN = "s3cret-token"


def test_the_page_loads_only_assets_the_app_serves(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert not re.search(r"https?://", page.text)
    assets = re.findall(r'(?:src|href)="(dashboard/assets/[^"]+)"', page.text)
    assert sorted(assets) == [
        "dashboard/assets/chart.js.LICENSE.md",
        "dashboard/assets/chart.umd.min.js",
        "dashboard/assets/dashboard.css",
        "dashboard/assets/dashboard.js",
    ]
    for asset in assets:
        response = client.get("/" + asset)
        assert response.status_code == 200, asset
        assert response.content, asset
    chart = client.get("/dashboard/assets/chart.umd.min.js")
    assert chart.headers["content-type"].startswith("text/javascript")
    assert chart.text.startswith("/*!\n * Chart.js v4.")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("setup.py", id="not-an-asset"),
        pytest.param("__init__.py", id="a-python-file"),
    ],
)
def test_an_unknown_asset_is_404_naming_it(client: TestClient, name: str) -> None:
    response = client.get(f"/dashboard/assets/{name}")
    assert response.status_code == 404
    assert response.json() == {"error": f"asset: no dashboard asset named {name!r}"}


def test_an_asset_path_cannot_leave_the_folder(client: TestClient) -> None:
    # encoded, so that the client sends the dots as they are (it would resolve "../")
    for path in ("/dashboard/assets/..%2Froutes.py", "/dashboard/assets/%2e%2e%2froutes.py"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "import" not in response.text


def test_the_dashboard_needs_the_token_when_metrics_need_it(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(auth_token=TOKEN, metrics_auth=True)
    with TestClient(create_app(settings)) as client:
        for path in ("/dashboard", "/dashboard/assets/dashboard.js"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.json() == {"error": "Authorization: missing or invalid bearer token"}
            allowed = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert allowed.status_code == 200, path


def test_the_dashboard_is_open_when_only_scoring_needs_the_token(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(create_app(make_settings(auth_token=TOKEN))) as client:
        assert client.get("/dashboard").status_code == 200
