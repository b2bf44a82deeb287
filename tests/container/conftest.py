from __future__ import annotations

import pytest

from tests.container.podman import ImageBuild
from tests.preparations import Preparations


@pytest.fixture(scope="session")
def image(preparations: Preparations) -> str:
    """The repository's Dockerfile built as a tagged image (started with the session)."""
    return preparations.take("image", ImageBuild).finish()
