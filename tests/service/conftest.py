"""Fixtures of the service tests: settings -> app -> client, and real servers.

A test that needs other settings overrides ``settings`` (in its module, or indirectly:
``@pytest.mark.parametrize("settings", [{"max_in_flight": 1}], indirect=True)``), or builds
them with the ``make_settings`` factory; ``app`` and ``client`` follow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from focal_eval.service.app import create_app
from focal_eval.service.core.settings import Settings
from focal_eval.service.testing import focal_server

# one thread, and a body limit small enough for the limit tests to bite
TEST_SETTINGS: dict[str, Any] = {"threads": 1, "max_body_bytes": 4 * 2**20}

MakeSettings = Callable[..., Settings]
FocalServe = Callable[[list[str], dict[str, str]], "subprocess.CompletedProcess[str]"]


def make_settings(**overrides: Any) -> Settings:
    """The tests' settings (:data:`TEST_SETTINGS`) with ``overrides``."""
    return Settings(**{**TEST_SETTINGS, **overrides})


@pytest.fixture(name="make_settings", scope="session")
def make_settings_fixture() -> MakeSettings:
    """The factory: ``make_settings(max_in_flight=1)``, :data:`TEST_SETTINGS` underneath."""
    return make_settings


@pytest.fixture
def settings(request: pytest.FixtureRequest, make_settings: MakeSettings) -> Settings:
    """The tests' settings; with indirect parametrization, the param's overrides on top."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    return make_settings(**overrides)


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


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test sees only the FOCAL_* variables it sets itself."""
    for name in list(os.environ):
        if name.startswith("FOCAL_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def focal_serve() -> FocalServe:
    """``focal serve ARGUMENTS`` with ``ENVIRONMENT``, as a module: it must exit before listening.

    Any FOCAL_* variable of the test's own environment is dropped; a server that starts
    listening fails the test by a timeout.
    """

    def run(arguments: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
        clean = {key: value for key, value in os.environ.items() if not key.startswith("FOCAL_")}
        return subprocess.run(
            [sys.executable, "-m", "focal_eval.service", "serve", *arguments],
            env={**clean, "FOCAL_PORT": "0", "FOCAL_THREADS": "1", **environment},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run
