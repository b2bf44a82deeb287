"""A command run in the background: its output kept in files, waited for once, or stopped."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

STOP_TIMEOUT_S = 30
LOWEST_PRIORITY = 19  # a nice value
# a process group of its own, in the same session (Popen's process_group is Python >= 3.11)
OWN_PROCESS_GROUP: dict[str, Any] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
)
TAIL_CHARS = 4000


class BackgroundCommand:
    """``command`` started now, at the lowest priority, in a process group of its own.

    Niced, it takes the CPU the tests leave; in its own group, :meth:`stop` ends what it
    started too (a shell's children, podman's). Its standard output and error each go to a
    file: a pipe nobody reads yet would stall it. It stays in the tests' session: where Linux
    schedules each session as one group (autogroups), nice values count only within a session,
    and four niced commands in sessions of their own made a test's loop 2.4 times slower.
    """

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command = shlex.join(command)
        self._stdout = tempfile.TemporaryFile()  # noqa: SIM115  (closed by stop())
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                ["nice", "-n", str(LOWEST_PRIORITY), *command],
                stdout=self._stdout,
                stderr=self._stderr,
                env=env,
                cwd=cwd,
                **OWN_PROCESS_GROUP,
            )
        except BaseException:
            self._close()
            raise
        self._outcome: str | AssertionError | None = None

    def wait(self, timeout_s: float) -> str:
        """Wait for the command, then stop it; its standard output (the same on every call).

        Raises:
            AssertionError: a non-zero exit, or still running after ``timeout_s``, with the
                tails of its standard error and output.
        """
        if self._outcome is None:
            try:
                self._outcome = self._finish(timeout_s)
            finally:
                self.stop()
        if isinstance(self._outcome, AssertionError):
            raise self._outcome
        return self._outcome

    def _finish(self, timeout_s: float) -> str | AssertionError:
        try:
            code = self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return AssertionError(
                f"{self.command}: still running after {timeout_s} s\n{self._tails()}"
            )
        if code != 0:
            return AssertionError(f"{self.command}: exit {code}\n{self._tails()}")
        return self._read(self._stdout)

    def stop(self) -> None:
        """End the command's process group if it still runs (SIGTERM, then SIGKILL)."""
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._close()

    def _close(self) -> None:
        self._stdout.close()
        self._stderr.close()

    def _tails(self) -> str:
        err, out = self._read(self._stderr), self._read(self._stdout)
        return f"stderr:\n{err[-TAIL_CHARS:]}\nstdout:\n{out[-TAIL_CHARS:]}"

    @staticmethod
    def _read(file: IO[bytes]) -> str:
        file.seek(0)
        return file.read().decode(errors="replace")
