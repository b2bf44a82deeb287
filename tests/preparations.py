"""The fixtures whose work starts with the session (``tests/conftest.py``), and that work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from tests.container.podman import ImageBuild
from tests.wheel import WheelInstall

PREPARED = ("image", "installed")  # the Docker image, the wheel installed in a fresh venv
Preparation = TypeVar("Preparation", ImageBuild, WheelInstall)


@dataclass(frozen=True)
class Preparations:
    """What the session started: None for what none of its tests needs, or failed to start."""

    image: ImageBuild | None
    wheel: WheelInstall | None

    def stop(self) -> None:
        """Stop each (a no-op for one that ended)."""
        for preparation in (self.image, self.wheel):
            if preparation is not None:
                preparation.stop()


def needs(item: pytest.Item) -> list[str]:
    """The fixtures of :data:`PREPARED` that ``item`` asks for."""
    names = getattr(item, "fixturenames", ())
    return [name for name in PREPARED if name in names]


def start(preparation: Callable[[], Preparation]) -> Preparation | None:
    """``preparation()``, or None where it cannot start: its fixture tries again and says why."""
    try:
        return preparation()
    except (Exception, pytest.skip.Exception, pytest.fail.Exception):
        return None
