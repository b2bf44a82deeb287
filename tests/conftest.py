"""Preparations that take minutes run beside the other tests.

The Docker image (``image``, tests/container) and the installed wheel (``installed``,
tests/test_packaging.py) are built by commands that mostly wait on the disk and the network
(:mod:`tests.background`). The tests that need one run last (keeping every order); the
session starts each one its tests need before its first test, and stops them at its end, so
that every other test runs meanwhile. Their fixtures wait for them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.container.podman import ImageBuild
from tests.preparations import Preparations, needs, start
from tests.wheel import WheelInstall


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what they deselect
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests that need a preparation to the end, each order kept (a stable sort)."""
    items.sort(key=lambda item: bool(needs(item)))


@pytest.fixture(scope="session", autouse=True)
def preparations(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Preparations]:
    """Each preparation the session's tests need, started; all stopped when the session ends."""
    needed = {name for item in request.session.items for name in needs(item)}
    started = Preparations(
        start(ImageBuild) if "image" in needed else None,
        start(lambda: WheelInstall(tmp_path_factory.mktemp("wheel")))
        if "installed" in needed
        else None,
    )
    yield started
    started.stop()
