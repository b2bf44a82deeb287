"""The app's documentation pages work offline: assets served by the app, rendered by a browser."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from focal_eval.service.testing import Server, focal_server
from tests.browser import rendered_dom

PAGES = ("/docs", "/redoc")


def test_doc_pages_load_only_what_the_app_serves(client: TestClient) -> None:
    assets = set()
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200
        assert not re.search(r"https?://(?!www\.w3\.org/)", page.text), path
        assets |= set(re.findall(r'(?:src|href)="([^"]+)"', page.text))
        assets |= set(re.findall(r"url: ['\"]([^'\"]+)['\"]", page.text))
        assets |= set(re.findall(r"Redoc\.init\('([^']+)'", page.text))
    assert sorted(assets) == [
        "/docs/assets/favicon.png",
        "/docs/assets/redoc.standalone.js",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
        "/openapi.json",
    ]
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.content, asset
    assert '"validatorUrl": null' in client.get("/docs").text  # no validator.swagger.io badge


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with focal_server() as running:
        yield running


def openapi(server: Server) -> dict[str, dict[str, dict[str, str]]]:
    with urllib.request.urlopen(server.url + "/openapi.json", timeout=10) as response:
        document: dict[str, dict[str, dict[str, str]]] = json.loads(response.read())["paths"]
    return document


def test_swagger_ui_renders_every_path_offline(server: Server) -> None:
    dom = rendered_dom(server.url + "/docs")
    assert "Unable to render" not in dom
    assert set(re.findall(r'data-path="([^"]+)"', dom)) == set(openapi(server))


def test_redoc_renders_every_operation_offline(server: Server) -> None:
    dom = rendered_dom(server.url + "/redoc")
    rendered = set(re.findall(r'id="operation/([^"]+)"', dom))
    expected = {op["operationId"] for path in openapi(server).values() for op in path.values()}
    assert rendered == expected
