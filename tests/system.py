"""Tests that need programs from outside PyPI (Prometheus, chromium, podman): run, skip or fail.

On a developer machine without them these tests skip with the reason. CI (``.ci/run``)
installs them and lists them in ``FOCAL_REQUIRED_SYSTEM_TESTS`` (e.g. ``prometheus,container``),
which turns a missing program into a failure, so nothing listed is skipped there.
"""

from __future__ import annotations

import os
import shutil

import pytest


def required(feature: str) -> bool:
    """Whether CI demands the ``feature`` tests run."""
    return feature in os.environ.get("FOCAL_REQUIRED_SYSTEM_TESTS", "").split(",")


def unavailable(feature: str, message: str) -> None:
    """Skip the test, or fail it where CI requires ``feature``."""
    if required(feature):
        pytest.fail(message)
    pytest.skip(message)


def require(program: str, feature: str, how: str) -> str:
    """The path of ``program``, or skip / fail as :func:`unavailable`."""
    path = shutil.which(program)
    if path is None:
        unavailable(feature, f"{program} is not installed ({how})")
        raise AssertionError("unreachable")
    return path
