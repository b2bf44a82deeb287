"""The wheel as a user installs it: built from a copy of the checkout, in a fresh venv.

:class:`WheelInstall` copies the checkout, then builds the wheel and pip-installs it with its
dependencies from the package index, in the background (``tests/conftest.py``);
``tests/test_packaging.py`` runs its checks in the result.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.background import BackgroundCommand

REPOSITORY = Path(__file__).resolve().parents[1]
PIP_TIMEOUT_S = 600
RUN_TIMEOUT_S = 120
NOT_COPIED_PATTERNS = (
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*_cache",
    "results",
)
NOT_COPIED = shutil.ignore_patterns(*NOT_COPIED_PATTERNS)


@dataclass(frozen=True)
class Installed:
    """The built wheel and the fresh venv it is installed in."""

    wheel: Path
    venv: Path
    outside: Path  # a working directory with nothing importable in it

    def bin(self, name: str) -> str:
        """A program of the venv."""
        return str(self.venv / "bin" / name)

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` from outside the checkout, with no PYTHONPATH."""
        return subprocess.run(
            command,
            cwd=self.outside,
            env={"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(self.outside)},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        """Run ``code`` in the venv's interpreter."""
        return self.run(self.bin("python"), "-c", code)


def wheel_command(source: Path, out: Path) -> list[str]:
    """``pip wheel`` of the project at ``source`` into ``out``, without its dependencies."""
    return [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "-w",
        str(out),
        str(source),
    ]


def build_wheel(source: Path, out: Path, *options: str, env: dict[str, str] | None = None) -> Path:
    """:func:`wheel_command` with ``options`` (and ``env``), checked; the wheel's path."""
    built = subprocess.run(
        [*wheel_command(source, out), *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    return wheel


class WheelInstall:
    """The checkout copied into ``root`` (now), its wheel built and installed there (started)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        shutil.copytree(REPOSITORY, root / "source", symlinks=True, ignore=NOT_COPIED)
        dist, venv = root / "dist", root / "venv"
        install = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        steps = [
            shlex.join(wheel_command(root / "source", dist)),
            shlex.join([sys.executable, "-m", "venv", str(venv)]),
            f"{shlex.join(install)} {shlex.quote(str(dist))}/*.whl",  # the one wheel built
        ]
        self._install = BackgroundCommand(["bash", "-c", " && ".join(steps)])

    def finish(self) -> Installed:
        """Wait for the install (bounded); the wheel and the venv."""
        self._install.wait(PIP_TIMEOUT_S)
        (wheel,) = (self._root / "dist").glob("*.whl")
        outside = self._root / "outside"
        outside.mkdir()
        return Installed(wheel, self._root / "venv", outside)

    def stop(self) -> None:
        """End the install if it still runs."""
        self._install.stop()
