from __future__ import annotations

import pytest

from tests.container.podman import build_image


@pytest.fixture(scope="session")
def image() -> str:
    """The repository's Dockerfile, built once per session."""
    return build_image()
