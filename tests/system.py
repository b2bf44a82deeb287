"""Tests that need programs from outside PyPI (Prometheus, podman): found, or skipped/failed.

On a developer machine without them these tests skip with the reason; CI (``.ci/run``)
installs them and sets ``FOCAL_SYSTEM_TESTS=required``, which turns a missing program into a
failure, so nothing is skipped there.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require(program: str, how: str) -> str:
    """The path of ``program``, or skip (fail under FOCAL_SYSTEM_TESTS=required)."""
    path = shutil.which(program)
    if path is None:
        message = f"{program} is not installed ({how})"
        if os.environ.get("FOCAL_SYSTEM_TESTS") == "required":
            pytest.fail(message)
        pytest.skip(message)
    return path
