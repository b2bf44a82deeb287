"""The fixtures prepared in the background, by name, and where the started ones are kept.

``tests/conftest.py`` starts them when collection ends; a fixture takes its own with
:func:`prepared`.
"""

from __future__ import annotations

from typing import TypeVar

import pytest

from tests.container.podman import ImageBuild
from tests.wheel import WheelInstall

Preparation = TypeVar("Preparation", ImageBuild, WheelInstall)

PREPARATIONS: dict[str, type[ImageBuild] | type[WheelInstall]] = {
    "image": ImageBuild,  # the Docker image (tests/container)
    "installed": WheelInstall,  # the wheel in a fresh venv (tests/test_packaging.py)
}
STARTED = pytest.StashKey[dict[str, ImageBuild | WheelInstall]]()


def prepared(config: pytest.Config, kind: type[Preparation]) -> Preparation:
    """The ``kind`` started at collection, else one started now (stopped with the others)."""
    (name,) = (name for name, each in PREPARATIONS.items() if each is kind)
    started = config.stash.setdefault(STARTED, {})
    if name not in started:
        started[name] = kind()
    preparation = started[name]
    assert isinstance(preparation, kind)
    return preparation
