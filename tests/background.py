"""A command run in the background: its output kept in a file, waited for once, or stopped."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence

STOP_TIMEOUT_S = 30


class BackgroundCommand:
    """``command`` started now, at the lowest priority, in a process group of its own.

    Niced, it takes the CPU the tests leave; in its own group, :meth:`stop` ends what it
    started too (a shell's children, podman's).
    """

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.command = shlex.join(command)
        # its output: a pipe nobody reads yet would stall it; closed by stop()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                ["nice", "-n", "19", *command],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    def wait(self, timeout_s: float) -> None:
        """Wait for the command, then stop it; its output's tail if it failed or ran too long.

        Raises:
            AssertionError: a non-zero exit, or still running after ``timeout_s``.
        """
        try:
            try:
                code = self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{self.command}: still running after {timeout_s} s\n{self._tail()}"
                ) from None
            if code != 0:
                raise AssertionError(f"{self.command}: exit {code}\n{self._tail()}")
        finally:
            self.stop()

    def stop(self) -> None:
        """End the command's process group if it still runs (SIGTERM, then SIGKILL)."""
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._log.close()

    def _tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]
