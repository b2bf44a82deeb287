"""Preparations that take minutes run beside the other tests.

The Docker image (``image``, tests/container), the installed wheel (``installed``,
tests/test_packaging.py) and the exports the export tests read (tests/export) are made by
commands that mostly wait on the disk and the network, or keep one core busy
(:mod:`tests.background`, niced). The tests that need one run last (keeping every order); the
session starts each one its tests need before its first test, and stops them at its end, so
that every other test runs meanwhile. Their fixtures wait for them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.preparations import Preparations, needs


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what they deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the tests that need a preparation to the end, each order kept (a stable sort).

    pytest's timeout covers only their test function (a timeout marker of their own stays):
    their set-up waits for a preparation, within the preparation's own limit.
    """
    items.sort(key=lambda item: bool(needs(item)))
    timeout = pytest.mark.timeout(float(config.getini("timeout")), func_only=True)
    for item in items:
        if needs(item) and item.get_closest_marker("timeout") is None:
            item.add_marker(timeout)


@pytest.fixture(scope="session", autouse=True)
def preparations(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Preparations]:
    """Each preparation the session's tests need, started; all stopped when the session ends."""
    needed = {name for item in request.session.items for name in needs(item)}
    started = Preparations(needed, tmp_path_factory, request.config)
    yield started
    started.stop()
