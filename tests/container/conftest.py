"""The image, built once per session, beside the tests that do not need it.

Building takes minutes, mostly waiting on the disk (podman's vfs storage copies whole file
systems), so the build starts as soon as collection ends and the tests that use the image run
last: every other test runs during the build.
"""

from __future__ import annotations

import contextlib

import pytest

from tests.container.podman import ImageBuild

BUILD = pytest.StashKey[ImageBuild]()


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what they deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the tests that use ``image`` to the end (keeping every order) and start its build.

    A build that cannot start (no podman, no base image) is left to the fixture, which then
    skips or fails with the reason.
    """
    items.sort(key=uses_image)  # stable: False first
    if items and uses_image(items[-1]):
        with contextlib.suppress(pytest.skip.Exception, pytest.fail.Exception):
            config.stash[BUILD] = ImageBuild()


def pytest_unconfigure(config: pytest.Config) -> None:
    """End a build the session no longer waits for (an interrupted run)."""
    build = config.stash.get(BUILD, None)
    if build is not None:
        build.stop()


def uses_image(item: pytest.Item) -> bool:
    """Whether ``item`` asks for the ``image`` fixture."""
    return "image" in getattr(item, "fixturenames", ())


@pytest.fixture(scope="session")
def image(request: pytest.FixtureRequest) -> str:
    """The repository's Dockerfile built as a tagged image: the started build, finished."""
    build = request.config.stash.get(BUILD, None)
    return (build or ImageBuild()).finish()
