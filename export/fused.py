"""The fused graphs: each a step of the service's kernel (``service/kernel/``) as one node.

A fused graph has its step's inputs and its per-sample and statistics outputs (names, dtypes
and shapes from that step's kind, so that the two cannot drift), computed by one
``ai.focal_eval`` custom op; metrics come from the step's metrics graph, once per request.
The multi-class step with ranking also gives the ranking step's statistics, from the same
pass over the logits (the ranking step's inputs are the first's logits, labels and
ignore_index).

================================ ========================== =========================
fused kind (file stem)           op                         steps it stands in for
================================ ========================== =========================
fused_evaluation                 FocalEvaluation            evaluation
fused_evaluation_ranking         FocalEvaluationRanking     evaluation, then ranking
fused_multilabel_evaluation      FocalMultilabelEvaluation  multilabel_evaluation
================================ ========================== =========================

Each is checked like the other artifacts, against eager PyTorch on its step's sweep (with
the same edge slack), in onnxruntime with the kernel library registered. None is written
without that library (no compiler when the package was built), nor while its step has outputs
the op does not compute (a statistic added in focal/ needs the kernel too).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from focal_eval.export.kinds import (
    EVALUATION,
    MULTILABEL_EVALUATION,
    RANKING,
    GraphKind,
    Options,
    Sweeps,
)
from focal_eval.export.parity import Parity, Runner, measure
from focal_eval.export.runners import onnx_runner, torch_runner
from focal_eval.export.sweeps import Inputs

DOMAIN = "ai.focal_eval"
# the library setup.py builds; found by name, not imported (export does not import service/)
LIBRARY_MODULE = "focal_eval.service.kernel._focal_kernel"

_ELEMENT_TYPES = {
    "float32": onnx.TensorProto.FLOAT,
    "float64": onnx.TensorProto.DOUBLE,
    "int64": onnx.TensorProto.INT64,
}

Signature = tuple[list[dict[str, Any]], list[dict[str, Any]]]


MULTICLASS_OUTPUTS = (
    "focal_loss",
    "cross_entropy",
    "p_true",
    "prediction",
    "confidence",
    "confusion_matrix",
    "focal_loss_sum",
    "cross_entropy_sum",
    "alpha_sum",
    "brier_sum",
    "bin_count",
    "bin_confidence_sum",
    "bin_correct",
)
RANKING_OUTPUTS = ("positive_histogram", "negative_histogram")
RANKING_INPUTS = (0, 1, 4)  # of the evaluation step's: logits, labels, ignore_index


@dataclass(frozen=True)
class FusedKind:
    """One row of the table: a fused graph, its op and what the op computes.

    Attributes:
        name: the manifest's ``kind`` and the file stem.
        op: the custom op (``service/kernel/*.cc``).
        step: the portable kind it stands in for.
        outputs: the op's outputs in its order.
        attributes: the op's attributes (constants of the graph) from the export's options.
        ranking: the op also gives the ranking step's statistics (after the step's).
    """

    name: str
    op: str
    step: GraphKind
    outputs: tuple[str, ...]
    attributes: Callable[[Options], dict[str, int]]
    ranking: bool = False

    def signature(self, options: Options) -> Signature | None:
        """The step's inputs, and its outputs but the metrics (then ranking's), for manifests.

        None when those outputs are not the op's: then the fused graph is not written.
        """
        inputs, outputs = self.step.signature(options)
        outputs = [entry for entry in outputs if entry["group"] != "metrics"]
        if self.ranking:
            ranked = RANKING.signature(options)[1]
            outputs += [entry for entry in ranked if entry["group"] == "statistics"]
        if tuple(entry["name"] for entry in outputs) != self.outputs:
            return None
        return inputs, outputs

    def reference(self, options: Options) -> Runner:
        """Eager PyTorch's values of the op's outputs: the step's (and ranking's)."""
        step = torch_runner(self.step.module(options))
        ranking = torch_runner(RANKING.module(options))
        count = len(self.outputs) - (len(RANKING_OUTPUTS) if self.ranking else 0)

        def run(inputs: Inputs) -> list[np.ndarray]:
            values = list(step(inputs))[:count]
            if self.ranking:
                values += list(ranking(tuple(inputs[i] for i in RANKING_INPUTS)))[:2]
            return values

        return run

    def slack(self, inputs: Inputs, reference: dict[str, np.ndarray]) -> dict[str, Any]:
        """The looseness near bin edges: the step's (and ranking's) rules."""
        allowed = dict(self.step.slack(inputs, reference))
        if self.ranking:
            allowed |= RANKING.slack(tuple(inputs[i] for i in RANKING_INPUTS), reference)
        return allowed


FUSED_KINDS = (
    FusedKind(
        "fused_evaluation",
        "FocalEvaluation",
        EVALUATION,
        MULTICLASS_OUTPUTS,
        lambda options: {"num_bins": options.num_bins},
    ),
    FusedKind(
        "fused_evaluation_ranking",
        "FocalEvaluationRanking",
        EVALUATION,
        MULTICLASS_OUTPUTS + RANKING_OUTPUTS,
        lambda options: {"num_bins": options.num_bins, "score_bins": options.score_bins},
        ranking=True,
    ),
    FusedKind(
        "fused_multilabel_evaluation",
        "FocalMultilabelEvaluation",
        MULTILABEL_EVALUATION,
        (
            "focal_loss",
            "binary_cross_entropy",
            "label_errors",
            "true_positive",
            "false_positive",
            "false_negative",
            "true_negative",
            "focal_loss_sum",
            "binary_cross_entropy_sum",
            "brier_sum",
            "bin_count",
            "bin_probability_sum",
            "bin_positive",
            "samples",
            "exact_matches",
            "sample_f1_sum",
            "positive_histogram",
            "negative_histogram",
        ),
        lambda options: {"num_bins": options.num_bins, "score_bins": options.score_bins},
    ),
)


def kernel_library() -> Path | None:
    """The kernel library of this installation, or None where it was not built."""
    spec = importlib.util.find_spec(LIBRARY_MODULE)
    return None if spec is None or spec.origin is None else Path(spec.origin)


def fused_model(kind: FusedKind, signature: Signature, options: Options, opset: int) -> Any:
    """One node of ``kind.op``, its attributes set, every tensor typed and shaped."""
    inputs, outputs = signature

    def value(entry: dict[str, Any]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(
            entry["name"], _ELEMENT_TYPES[entry["dtype"]], entry["shape"]
        )

    node = helper.make_node(
        kind.op, [entry["name"] for entry in inputs], [entry["name"] for entry in outputs]
    )
    node.domain = DOMAIN
    node.attribute.extend(
        helper.make_attribute(name, value) for name, value in kind.attributes(options).items()
    )
    graph = helper.make_graph(
        [node], kind.name, [value(entry) for entry in inputs], [value(entry) for entry in outputs]
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)],
        producer_name="focal-eval",
    )
    onnx.checker.check_model(model)
    return model


def check_fused(
    kind: FusedKind, path: Path, library: Path, options: Options, sweeps: Sweeps
) -> Parity:
    """A fused graph against eager PyTorch's per-sample values and statistics of its steps."""
    return measure(
        onnx_runner(path, [library]),
        kind.reference(options),
        kind.step.cases(sweeps),
        kind.outputs,
        kind.step.case_inputs,
        kind.slack,
    )
