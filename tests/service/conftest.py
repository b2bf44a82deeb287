from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.settings import Settings
from service.testing import focal_server


@pytest.fixture
def settings() -> Settings:
    """Default settings, small limits where tests need them to bite."""
    return Settings(threads=1, max_body_bytes=4 * 2**20)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client with the lifespan run (graphs loaded and warmed up)."""
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A real ``focal serve`` process on 127.0.0.1, shared by the session's tests."""
    with focal_server({"FOCAL_THREADS": "1"}) as server:
        yield server.url
