"""Preparations that take minutes (the image build, the wheel install), run beside the tests.

Each is a command started when collection ends (``tests/conftest.py``) with its output in a
file; the fixture that needs it waits for it. The tests that use such a fixture run last, so
that every other test runs meanwhile.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence

STOP_TIMEOUT_S = 30


class Started:
    """A command running in the background: waited for, or stopped."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.command = shlex.join(command)
        # its output: a pipe nobody reads yet would stall it; closed by stop()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    def wait(self, timeout_s: float) -> None:
        """Wait for the command (bounded); an AssertionError with its output if it failed."""
        try:
            if self._process.wait(timeout=timeout_s) != 0:
                self._log.seek(0)
                output = self._log.read().decode(errors="replace")
                raise AssertionError(f"{self.command} failed:\n{output[-4000:]}")
        finally:
            self.stop()

    def stop(self) -> None:
        """End the command if it still runs (a no-op once it has exited): SIGTERM, then SIGKILL."""
        self._process.terminate()
        try:
            self._process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()
