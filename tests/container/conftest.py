from __future__ import annotations

import pytest

from tests.container.podman import ImageBuild
from tests.preparations import prepared


@pytest.fixture(scope="session")
def image(request: pytest.FixtureRequest) -> str:
    """The repository's Dockerfile built as a tagged image (started at collection)."""
    return prepared(request.config, ImageBuild).finish()
