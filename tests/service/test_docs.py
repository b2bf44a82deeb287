"""``/docs`` works offline: every asset it names is served by the app, none by a CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_docs_load_only_what_the_app_serves(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "http://" not in page.text
    assert "https://" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(
        r"url: '([^']+)'", page.text
    )
    assert sorted(assets) == [
        "/docs/assets/favicon-32x32.png",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
        "/openapi.json",
    ]
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.content, asset
    assert '"validatorUrl": null' in page.text  # no badge fetched from validator.swagger.io
    assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN
