"""Preparations that take minutes start when collection ends, beside the other tests.

The Docker image and the installed wheel (:mod:`tests.preparations`) are commands that mostly
wait on the disk and the network (:mod:`tests.background`). Each one a selected test needs is
started as soon as the tests are known, and the tests that need one run last (keeping every
order), so that every other test runs meanwhile. Their fixtures wait for what was started.
"""

from __future__ import annotations

import contextlib

import pytest

from tests.preparations import PREPARATIONS, STARTED


def needs(item: pytest.Item) -> list[str]:
    """The fixtures prepared in the background that ``item`` asks for."""
    names = getattr(item, "fixturenames", ())
    return [name for name in PREPARATIONS if name in names]


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what they deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the tests that need a preparation to the end, and start each one needed.

    One that cannot start (no podman, no base image) is left to its fixture, which then skips
    or fails with the reason.
    """
    items.sort(key=lambda item: bool(needs(item)))  # stable: False first
    started = config.stash.setdefault(STARTED, {})
    for name in dict.fromkeys(name for item in items for name in needs(item)):
        with contextlib.suppress(pytest.skip.Exception, pytest.fail.Exception):
            started[name] = PREPARATIONS[name]()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop every preparation (a no-op for one that ended) and free what it holds."""
    for preparation in config.stash.get(STARTED, {}).values():
        preparation.stop()
