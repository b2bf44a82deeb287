"""``focal export`` run as a user runs it, in a process of its own, beside the other tests."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tests.background import BackgroundCommand

EXPORT_TIMEOUT_S = 240  # within pytest's timeout of 300 s
MANIFEST_SUFFIX = ".manifest.json"
# what the export CLI's test exports with: every option that changes a graph, not its default
OPTIONS = ("--formats", "onnx", "--gamma", "1.5", "--num-bins", "10", "--score-bins", "20")


class ArtifactExport:
    """``focal export --out out *options`` started now, under pytest's warning filters.

    ``warning_filters`` are pytest's ``filterwarnings``, passed as Python's ``-W`` options (the
    same fields; ``-W`` reads a message as literal text where pytest reads a regular
    expression), so that a warning the export raises fails it as it would inside the session.
    """

    def __init__(
        self, out: Path, options: Sequence[str] = (), warning_filters: Sequence[str] = ()
    ) -> None:
        self.out = out
        focal = Path(sys.executable).with_name("focal")  # the console script beside python
        warnings = [f"-W{f}" for f in warning_filters]
        command = [sys.executable, *warnings, str(focal), "export", "--out", str(out), *options]
        self._export = BackgroundCommand(command)

    def finish(self) -> str:
        """Wait for the export (bounded); what it printed, its parity table."""
        return self._export.wait(EXPORT_TIMEOUT_S)

    def stop(self) -> None:
        """End the export if it still runs."""
        self._export.stop()


def artifacts_in(out: Path) -> dict[str, Path]:
    """Every artifact in ``out``, by file name (their manifests beside them)."""
    return {path.name: path for path in out.iterdir() if not path.name.endswith(MANIFEST_SUFFIX)}
