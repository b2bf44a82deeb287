"""A real ``focal serve`` process on 127.0.0.1, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import httpx


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_server(
    env: Mapping[str, str] | None = None, ready_timeout_s: float = 30.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``focal serve`` on a free port, wait until ready, stop it on exit.

    Yields the base URL and the process (for signal tests). Fails if it is not ready within
    ``ready_timeout_s``.
    """
    port = free_port()
    environment = {**os.environ, "FOCAL_HOST": "127.0.0.1", "FOCAL_PORT": str(port), **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                raise RuntimeError(f"focal serve exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"focal serve not ready within {ready_timeout_s} s")
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()
