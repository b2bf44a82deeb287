"""Real servers for tests and benchmarks: ``focal serve`` subprocesses on 127.0.0.1.

Each starts on a free port, is waited for until ready (bounded), and is always stopped. The
end-to-end tests and bench/ both start their servers with these; the server runs in its own
process, as in production, so that a client never shares an interpreter (or a GIL) with it.
Servers started together boot in parallel. Standard library only.
"""

from __future__ import annotations

import os
import resource
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
from functools import partial
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent  # the working directory of every server
HOST = "127.0.0.1"
THREADS = 2
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Server:
    """A running server: its base URL, process (for RSS sampling, profiling, signals), output."""

    url: str
    process: subprocess.Popen[bytes]
    output: IO[bytes]  # opened for appending: reading it never moves the server's writes

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        """Everything the server has written so far (stdout and stderr)."""
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

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
    open_files: int | None = None  # the server's soft RLIMIT_NOFILE; None: inherited

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://{HOST}:{self.port}"


_HANDED_OUT: set[int] = set()  # ports free_port has returned in this process


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, and never returned before by this process.

    The kernel may give the same free port to two probes in a row (32 repeats in 1,000 seen
    here): two servers started together would then share it, the second would fail to bind,
    and the first would answer the second's readiness check.
    """
    while True:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port: int = probe.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def focal_spec(
    env: Mapping[str, str] | None = None, focal: Sequence[str] = (), open_files: int | None = None
) -> Spec:
    """``focal serve`` with ``FOCAL_THREADS=2`` and warnings-only logging (plus ``env``).

    ``focal`` is the command to run (an installed ``focal`` script, say); by default this
    interpreter's ``python -m focal_eval.service``. ``open_files``: its soft open-files limit.
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
    return Spec(command, port, "/v2/health/ready", settings, open_files)


@contextmanager
def serve(*specs: Spec) -> Iterator[list[Server]]:
    """Start every server at once, wait until all are ready, stop them all on exit."""
    with ExitStack() as stack:
        started = [(spec, stack.enter_context(_process(spec))) for spec in specs]
        deadline = time.monotonic() + READY_TIMEOUT_S
        for spec, (process, output) in started:
            _wait_ready(Server(spec.url, process, output), spec.ready_path, deadline)
        yield [Server(spec.url, process, output) for spec, (process, output) in started]


@contextmanager
def focal_server(env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """One ``focal serve`` (see :func:`focal_spec`)."""
    with serve(focal_spec(env)) as (server,):
        yield server


@contextmanager
def _process(spec: Spec) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """Run ``spec.command`` until the block exits, output in a temporary file; then stop it."""

    def limit_open_files(soft: int) -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with tempfile.TemporaryFile("a+b") as output:
        process = subprocess.Popen(
            spec.command,
            cwd=REPO,
            env={**os.environ, **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=None
            if spec.open_files is None
            else partial(limit_open_files, spec.open_files),
        )
        try:
            yield process, output
        finally:
            stop(process)


def _wait_ready(server: Server, ready_path: str, deadline: float) -> None:
    ready_url = server.url + ready_path
    while True:
        if server.process.poll() is not None:
            code = server.process.returncode
            raise RuntimeError(f"{server.process.args!r} exited with {code}:\n{server.log()}")
        try:
            with urllib.request.urlopen(ready_url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{ready_url} not ready within {READY_TIMEOUT_S:g} s:\n{server.log()}"
            )
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``STOP_TIMEOUT_S``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
