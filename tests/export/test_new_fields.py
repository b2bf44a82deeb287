"""A new metric or statistic reaches every artifact by editing focal/ alone.

Each case copies focal/ to a temporary folder, adds a field the way a contributor would (a
metric: a ``Metrics`` field computed in ``_compute``, an edit of focal/metrics.py only; a
statistic: a ``Statistics`` field computed in ``_update``, plus a metric that reads it), and
runs the unmodified export pipeline on the copy in a fresh interpreter (the two cases' at once:
an export keeps about one core busy): every artifact must pass parity, and the manifests, the
graphs and the derived functions must carry the new field. A fresh process is the honest test:
module-level names (``Statistics._fields``, the generated ``merge`` and ``forward``) are fixed
at import, so patching ``focal`` in this process would test the patch, not the code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from focal_eval.export.sweeps import Case
from focal_eval.focal import Metrics, PerSample, Statistics, compute, update

REPOSITORY = Path(__file__).resolve().parents[2]
EXPORT_TIMEOUT_S = 240  # both exports: within pytest's timeout of 300 s

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


@dataclass(frozen=True)
class Exported:
    """One addition's export: its copy, its artifacts folder, and how its process ended."""

    source: Path
    out: Path
    returncode: int
    stdout: str
    stderr: str

    def report(self) -> dict[str, Any]:
        """The script's report, after checking that it ran to the end in the copy."""
        assert self.returncode == 0, self.stderr
        report: dict[str, Any] = json.loads(self.stdout.splitlines()[-1])
        assert Path(report["focal"]).is_relative_to(self.source)
        return report


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    """Each addition exported from its copy, the copies side by side (one process each).

    Both are waited for (within one deadline, under pytest's own timeout), so that each
    test reports its own export's failure.
    """
    running: dict[str, tuple[Path, Path, subprocess.Popen[str]]] = {}
    deadline = time.monotonic() + EXPORT_TIMEOUT_S
    try:
        for name, addition in ADDITIONS.items():
            tmp_path = tmp_path_factory.mktemp(name)
            source, out = copy_with(addition, tmp_path), tmp_path / "artifacts"
            process = subprocess.Popen(
                [sys.executable, "-c", SCRIPT, str(out)],
                cwd=source,  # first on sys.path: the copy's focal_eval shadows the repository's
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            running[name] = (source, out, process)
        done = {}
        for name, (source, out, process) in running.items():
            try:
                stdout, stderr = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
                stderr += f"\n(killed after {EXPORT_TIMEOUT_S} s)"
            done[name] = Exported(source, out, process.returncode, stdout, stderr)
        return done
    finally:
        for _, _, process in running.values():
            process.kill()  # a no-op once it has exited
            process.communicate()  # and its pipes closed


def manifest(out: Path, artifact: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / f"{artifact}.manifest.json").read_text())
    return loaded


def names(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["name"] for entry in entries]


@pytest.mark.parametrize("name", ADDITIONS)
def test_a_new_field_reaches_every_artifact_from_focal_alone(
    name: str, exports: dict[str, Exported]
) -> None:
    addition = ADDITIONS[name]
    out, report = exports[name].out, exports[name].report()
    added = [addition.statistic] if addition.statistic else []
    statistics = [*Statistics._fields, *added]
    metrics = [*Metrics._fields, addition.metric]

    # every artifact written and within tolerance of eager, the new outputs included; the
    # fused graph too while the kernel computes every statistic (a new one needs the kernel)
    fused: dict[str, list[str]] = {"fused_multilabel_evaluation.onnx": []}
    if not addition.statistic:  # a new multi-class statistic needs the kernel too
        fused |= {"fused_evaluation.onnx": [], "fused_evaluation_ranking.onnx": []}
    assert report["failures"] == fused | {
        "evaluation.onnx": [],
        "evaluation_statistics.onnx": [],
        "metrics.onnx": [],
        "sigmoid_focal_loss.onnx": [],
        "multilabel_evaluation.onnx": [],
        "multilabel_evaluation_statistics.onnx": [],
        "multilabel_metrics.onnx": [],
        "ranking.onnx": [],
        "ranking_statistics.onnx": [],
        "ranking_metrics.onnx": [],
        "evaluation.torchscript.pt": [],
        "multilabel_evaluation.torchscript.pt": [],
        "evaluation.pt2": [],
    }
    # merge, empty_statistics and the metrics module follow Statistics._fields (scripted)
    assert report["statistics"] == statistics
    assert list(report["empty"]) == statistics
    assert all(zero for _, zero in report["empty"].values())
    assert report["merge_sums"] == [True] * len(statistics)
    assert report["scripted_metrics_match"] == [True] * len(metrics)
    if addition.statistic:
        assert report["empty"][addition.statistic][0] == [3]

    # manifests: old names in their old order, the new ones last in their group
    for artifact in ("evaluation.onnx", "evaluation.torchscript.pt", "evaluation.pt2"):
        outputs = manifest(out, artifact)["outputs"]
        assert names(outputs) == [*PerSample._fields, *statistics, *metrics], artifact
        by_name = {entry["name"]: entry for entry in outputs}
        assert by_name[addition.metric] == {
            "name": addition.metric,
            "dtype": "float64",
            "shape": [],
            "group": "metrics",
        }
        if addition.statistic:
            assert by_name[addition.statistic]["shape"] == ["C"]
            assert by_name[addition.statistic]["group"] == "statistics"
    # the statistics-only graph (a server's chunks) gives the new statistic, and no metrics
    chunks = manifest(out, "evaluation_statistics.onnx")["outputs"]
    assert names(chunks) == [*PerSample._fields, *statistics]
    metrics_manifest = manifest(out, "metrics.onnx")
    assert names(metrics_manifest["inputs"]) == statistics
    assert names(metrics_manifest["outputs"]) == metrics
    graph = onnx.load(out / "metrics.onnx").graph
    assert [v.name for v in graph.input] == statistics
    assert [v.name for v in graph.output] == metrics

    # the metrics graph reads the new statistic, with C dynamic (exported at C = 5)
    logits, labels, alpha, _, _ = Case(40, 4, 2.0, True, 0.2, 2.0).inputs()
    current = update(logits, labels, alpha)[1]
    feeds = {name: t.numpy() for name, t in zip(Statistics._fields, current, strict=True)}
    valid = labels != -100
    p_true = torch.softmax(logits.double(), 1)[valid, labels[valid]].numpy()
    if addition.statistic:
        sums = np.zeros(4)
        np.add.at(sums, labels[valid].numpy(), p_true)
        feeds[addition.statistic] = sums
    got = dict(
        zip(
            metrics,
            onnxruntime.InferenceSession(str(out / "metrics.onnx")).run(None, feeds),
            strict=True,
        )
    )
    for name, want in zip(Metrics._fields, compute(current), strict=True):
        np.testing.assert_allclose(got[name], want.numpy(), rtol=1e-12, err_msg=name)
    accuracy = float(compute(current).accuracy)
    expected = {"error_rate": 1.0 - accuracy, "mean_true_probability": p_true.mean()}
    np.testing.assert_allclose(got[addition.metric], expected[addition.metric], rtol=1e-6)
