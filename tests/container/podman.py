"""Running the real Dockerfile with the podman shim in ../shared/container (no Docker engine).

``docker(...)`` runs the shim; the ``image`` fixture (tests/container/conftest.py) builds the
image once per session, in the background while other tests run (:mod:`tests.background`). Tests
skip where podman or the base image is missing, and fail instead where CI requires them
(``tests.system``).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from tests.background import BackgroundCommand
from tests.system import require, unavailable

ROOT = Path(__file__).resolve().parents[2]
BASE = "docker.io/library/python:3.11-slim"
TAG = "localhost/focal-eval:test"
BUILD_STAGE_LABEL = "org.focal-eval.stage=build"  # the Dockerfile's build stage
BUILD_TIMEOUT_S = 900
DOCKER_ENVIRONMENT = {**os.environ, "BUILDAH_FORMAT": "docker"}  # keep HEALTHCHECK in the image


def docker_cli() -> str:
    """The podman shim (this machine runs no Docker engine): FOCAL_DOCKER, else beside the repo."""
    for candidate in (os.environ.get("FOCAL_DOCKER"), str(ROOT.parent / "shared/container/docker")):
        if candidate and Path(candidate).is_file():
            require("podman", "container", "run ../shared/container/make-base-image")
            return candidate
    unavailable(
        "container", "the docker shim is not found: set FOCAL_DOCKER or put shared/ beside the repo"
    )
    raise AssertionError("unreachable")


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS`` through the shim and return its output."""
    return subprocess.run(
        [docker_cli(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        env=DOCKER_ENVIRONMENT,
    )


class ImageBuild:
    """``docker build`` of the repository's Dockerfile as ``TAG``: started, then finished.

    Starting skips (or fails, where CI requires the image) when podman or the base image is
    missing. Finishing removes the images the build supersedes (each build left about 1.1 GB
    behind): the previous ``TAG``, and every build stage's image but the newest, which the
    next build's layer cache starts from.
    """

    def __init__(self) -> None:
        if docker("image", "exists", BASE, check=False).returncode != 0:
            unavailable("container", f"{BASE} is missing: run ../shared/container/make-base-image")
        self._previous = _image_id(TAG)
        build = [docker_cli(), "build", "-t", TAG, str(ROOT)]
        self._build = BackgroundCommand(build, DOCKER_ENVIRONMENT)

    def finish(self) -> str:
        """Wait for the build (bounded), clean up after it, print its size; ``TAG``."""
        self._build.wait(BUILD_TIMEOUT_S)
        built_before = docker(
            "images", "--quiet", "--filter", f"label={BUILD_STAGE_LABEL}", "--sort", "created"
        ).stdout.split()[1:]  # newest first: keep the first
        superseded = [self._previous] if self._previous not in (None, _image_id(TAG)) else []
        for image in dict.fromkeys(superseded + built_before):
            docker("rmi", image, check=False)  # one a container still uses stays
        size = int(docker("image", "inspect", TAG, "--format", "{{.Size}}").stdout)
        base = int(docker("image", "inspect", BASE, "--format", "{{.Size}}").stdout)
        print(f"\nimage {TAG}: {size / 1e6:.0f} MB, {(size - base) / 1e6:.0f} MB over {BASE}")
        return TAG

    def stop(self) -> None:
        """End the build if it still runs."""
        self._build.stop()


def _image_id(name: str) -> str | None:
    """The full id of the image ``name``, or None when there is none."""
    found = docker("image", "inspect", name, "--format", "{{.Id}}", check=False)
    if found.returncode != 0:
        return None
    return found.stdout.strip() or None


def wait_ready(url: str, cid: str, timeout_s: float = 60) -> None:
    """Poll readiness (bounded); on time-out, fail with the container's logs."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            logs = docker("logs", cid, check=False)
            raise AssertionError(f"container not ready:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.3)
