"""A command run in the background: its output kept in files, waited for once, or stopped."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

STOP_TIMEOUT_S = 30
LOWEST_PRIORITY = 19  # a nice value
TAIL_CHARS = 4000


class BackgroundCommand:
    """``command`` started now, at the lowest priority, in a process group of its own.

    Niced, it takes the CPU the tests leave; in its own group, :meth:`stop` ends what it
    started too (a shell's children, podman's). Its standard output and error each go to a
    file: a pipe nobody reads yet would stall it.

    Its process group comes with a session of its own. Where Linux schedules each session as
    one group (autogroups), nice values count only within a session: four niced commands made
    a test's loop 2.4 times slower. So the session's group is niced as well.
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
                start_new_session=True,
            )
        except BaseException:
            self._close()
            raise
        with contextlib.suppress(OSError):  # no such file: a kernel without autogroups
            Path(f"/proc/{self._process.pid}/autogroup").write_text(f"{LOWEST_PRIORITY}\n")

    def wait(self, timeout_s: float) -> str:
        """Wait for the command, then stop it; its standard output.

        Raises:
            AssertionError: a non-zero exit, or still running after ``timeout_s``, with the
                tails of its standard error and output.
        """
        try:
            try:
                code = self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{self.command}: still running after {timeout_s} s\n{self._tails()}"
                ) from None
            if code != 0:
                raise AssertionError(f"{self.command}: exit {code}\n{self._tails()}")
            return self._read(self._stdout)
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
