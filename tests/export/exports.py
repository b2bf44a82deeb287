"""``focal export`` run as a user runs it, in a process of its own, beside the other tests."""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.background import BackgroundCommand

EXPORT_TIMEOUT_S = 600  # four at once on two cores, beside the tests: about 260 s
MANIFEST_SUFFIX = ".manifest.json"
# what the export CLI's test exports with: every option that changes a graph, not its default
OPTIONS = ("--formats", "onnx", "--gamma", "1.5", "--num-bins", "10", "--score-bins", "20")


@dataclass(frozen=True)
class Exported:
    """A finished export: its folder, and what it printed (the parity table)."""

    out: Path
    table: str

    def artifacts(self) -> dict[str, Path]:
        """Every artifact written, by file name (their manifests beside them)."""
        return {p.name: p for p in self.out.iterdir() if not p.name.endswith(MANIFEST_SUFFIX)}


class ArtifactExport:
    """``focal export --out out *options`` started now, under pytest's warning filters.

    ``warning_filters`` are pytest's, passed as Python's ``-W`` options, so that a warning the
    export raises fails it as it would inside the session. The fields are the same; ``-W``
    matches a message's start and a module's whole name as literal text, where pytest reads
    regular expressions, so a filter can only get narrower on the way.
    """

    def __init__(
        self, out: Path, options: Sequence[str] = (), warning_filters: Sequence[str] = ()
    ) -> None:
        self.out = out
        focal = Path(sysconfig.get_path("scripts")) / "focal"  # the console script
        if not focal.is_file():
            raise FileNotFoundError(f"{focal}: no `focal` command; install the project (make test)")
        warnings = [f"-W{f}" for f in warning_filters]
        command = [sys.executable, *warnings, str(focal), "export", "--out", str(out), *options]
        self._export = BackgroundCommand(command)

    def finish(self) -> Exported:
        """Wait for the export (bounded); its folder and what it printed."""
        return Exported(self.out, self._export.wait(EXPORT_TIMEOUT_S))

    def stop(self) -> None:
        """End the export if it still runs."""
        self._export.stop()
