"""Real servers for tests and benchmarks: ``focal serve`` subprocesses on 127.0.0.1.

Each starts on a free port, is waited for until ready (bounded), and is always stopped. The
end-to-end tests and bench/ both start their servers with these; the server runs in its own
process, as in production, so that a client never shares an interpreter (or a GIL) with it.
Servers started together boot in parallel. Standard library only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent  # the working directory of every server
HOST = "127.0.0.1"
THREADS = 2
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Server:
    """A running server: its base URL and process (for RSS sampling, profiling, signals)."""

    url: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    @property
    def address(self) -> str:
        """``host:port``, as tritonclient wants it."""
        return self.url.removeprefix("http://")


@dataclass(frozen=True)
class Spec:
    """How to start a server and how to tell that it is ready."""

    command: list[str]
    port: int
    ready_path: str
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://{HOST}:{self.port}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def focal_spec(env: Mapping[str, str] | None = None, focal: Sequence[str] = ()) -> Spec:
    """``focal serve`` with ``FOCAL_THREADS=2`` and warnings-only logging (plus ``env``).

    ``focal`` is the command to run (an installed ``focal`` script, say); by default this
    interpreter's ``python -m focal_eval.service``.
    """
    port = free_port()
    settings = {
        "FOCAL_HOST": HOST,
        "FOCAL_PORT": str(port),
        "FOCAL_THREADS": str(THREADS),
        "FOCAL_LOG_LEVEL": "warning",
        **(env or {}),
    }
    command = [*(focal or (sys.executable, "-m", "focal_eval.service")), "serve"]
    return Spec(command, port, "/v2/health/ready", settings)


@contextmanager
def serve(*specs: Spec) -> Iterator[list[Server]]:
    """Start every server at once, wait until all are ready, stop them all on exit."""
    with ExitStack() as stack:
        started = [(spec, stack.enter_context(_process(spec))) for spec in specs]
        deadline = time.monotonic() + READY_TIMEOUT_S
        for spec, (process, log) in started:
            _wait_ready(process, spec.url + spec.ready_path, deadline, log)
        yield [Server(spec.url, process) for spec, (process, _) in started]


@contextmanager
def focal_server(env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """One ``focal serve`` (see :func:`focal_spec`)."""
    with serve(focal_spec(env)) as (server,):
        yield server


@contextmanager
def _process(spec: Spec) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """Run ``spec.command`` until the block exits, output in a temporary file; then stop it."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            spec.command,
            cwd=REPO,
            env={**os.environ, **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process, log
        finally:
            _stop(process)


def _wait_ready(
    process: subprocess.Popen[bytes], ready_url: str, deadline: float, log: IO[bytes]
) -> None:
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(ready_url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{ready_url} not ready within {READY_TIMEOUT_S:g} s:\n{_tail(log)}")
        time.sleep(0.05)


def _tail(log: IO[bytes], size: int = 4000) -> str:
    log.seek(0)
    return log.read()[-size:].decode(errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
