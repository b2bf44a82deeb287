"""Additions to focal/ as a contributor makes them, each exported from its own copy.

Each copies focal/ to a temporary folder, adds a field there (a metric: a ``Metrics`` field
computed in ``_compute``, an edit of focal/metrics.py only; a statistic: a ``Statistics``
field computed in ``_update``, plus a metric that reads it), and runs the unmodified export
pipeline on the copy in a fresh interpreter, in the background (``tests/preparations.py``):
an export keeps about one core busy for a minute.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.background import BackgroundCommand
from tests.export.exports import EXPORT_TIMEOUT_S

REPOSITORY = Path(__file__).resolve().parents[2]

# runs in the copy: export everything, then the focal-side functions built from `_fields`
SCRIPT = """
import json, sys, warnings
from pathlib import Path

import torch

from focal_eval import focal
from focal_eval.export import export_all
from focal_eval.export.sweeps import Case, LabelCase

warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
reports = export_all(
    Path(sys.argv[1]),
    cases=[Case(7, 3, 2.0, True, 0.3, 3.0), Case(64, 10, 0.5, False, 0.0, 30.0)],
    label_cases=[LabelCase(7, 3, 2.0, 0.25, 0.3, 0.3, 3.0)],
)
stats = focal.update(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, -100]))[1]
merged = torch.jit.script(focal.merge)(stats, stats)
metrics = torch.jit.script(focal.MetricsFromStatistics())(*stats)
empty = torch.jit.script(focal.empty_statistics)(3, 15, None)
print(json.dumps({
    "focal": focal.__file__,
    "failures": {r.path.name: list(r.parity.failures) for r in reports},
    "statistics": list(focal.Statistics._fields),
    "empty": {n: [list(t.shape), not t.any().item()] for n, t in zip(stats._fields, empty)},
    "merge_sums": [torch.equal(m, s + s) for m, s in zip(merged, stats)],
    "scripted_metrics_match": [
        torch.equal(a, b) or bool(a.isnan().all() and b.isnan().all())
        for a, b in zip(metrics, focal.compute(stats))
    ],
}))
"""


@dataclass(frozen=True)
class Addition:
    """Source edits: ``{file: [(anchor line, line inserted after it)]}``, and what they add."""

    edits: dict[str, list[tuple[str, str]]]
    statistic: str | None
    metric: str


METRIC_ONLY = Addition(
    {
        "metrics.py": [
            ("    support: Tensor  # int64\n", "    error_rate: Tensor\n"),
            (
                "        support=s.confusion_matrix.sum(1),\n",
                "        error_rate=1.0 - true_positive.sum() / n,\n",
            ),
        ]
    },
    statistic=None,
    metric="error_rate",
)
STATISTIC_AND_METRIC = Addition(
    {
        "statistics.py": [
            (
                "    bin_correct: Tensor  # int64 (B,): correct predictions per bin\n",
                "    p_true_sum: Tensor  # float64 (C,): sum of p_y by true class\n",
            ),
            (
                "        bin_correct=per_bin.long().scatter_add(0, bins, correct),\n",
                "        p_true_sum=per_class.scatter_add(0, safe_labels, p_true.double()),\n",
            ),
        ],
        "metrics.py": [
            ("    support: Tensor  # int64\n", "    mean_true_probability: Tensor\n"),
            (
                "        support=s.confusion_matrix.sum(1),\n",
                "        mean_true_probability=s.p_true_sum.sum() / n,\n",
            ),
        ],
    },
    statistic="p_true_sum",
    metric="mean_true_probability",
)
ADDITIONS = {"metric": METRIC_ONLY, "statistic-and-metric": STATISTIC_AND_METRIC}


def copy_with(addition: Addition, tmp_path: Path) -> Path:
    """A copy of the checkout's package with ``addition`` applied to its focal/; its root."""
    source = tmp_path / "source"
    package = source / "focal_eval"  # the checkout's layout: focal copied, the rest linked
    shutil.copytree(
        REPOSITORY / "focal", package / "focal", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPOSITORY / "focal_eval" / "__init__.py", package)
    for name in ("export", "service"):
        (package / name).symlink_to(REPOSITORY / name, target_is_directory=True)
    for name, edits in addition.edits.items():
        path = package / "focal" / name
        text = path.read_text()
        for anchor, line in edits:
            assert text.count(anchor) == 1, f"{name} no longer has the line {anchor!r}"
            text = text.replace(anchor, anchor + line)
        path.write_text(text)
    return source


class AdditionExports:
    """Each of :data:`ADDITIONS` exported from its own copy, side by side, started now."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._running: dict[str, tuple[Path, Path, BackgroundCommand]] = {}
        try:
            for name, addition in ADDITIONS.items():
                tmp_path = tmp_path_factory.mktemp(name)
                source, out = copy_with(addition, tmp_path), tmp_path / "artifacts"
                # the copy first on sys.path (the working directory): its focal_eval shadows
                # the repository's
                command = BackgroundCommand([sys.executable, "-c", SCRIPT, str(out)], cwd=source)
                self._running[name] = (source, out, command)
        except BaseException:
            self.stop()
            raise

    def finish(self, name: str) -> tuple[Path, dict[str, Any]]:
        """Wait for addition ``name``'s export (bounded); its artifacts folder and its report.

        Raises:
            AssertionError: the export failed, or did not run in the copy.
        """
        source, out, command = self._running[name]
        report: dict[str, Any] = json.loads(command.wait(EXPORT_TIMEOUT_S).splitlines()[-1])
        assert Path(report["focal"]).is_relative_to(source)
        return out, report

    def stop(self) -> None:
        """End every export that still runs."""
        for _, _, command in self._running.values():
            command.stop()
