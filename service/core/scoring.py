"""The scorer: the evaluation and metrics graphs in onnxruntime, checked, warmed up, shared.

One ``InferenceSession`` per graph serves every request (``run`` is thread-safe and releases
the GIL); callers run it off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.service.artifacts import Artifact, ArtifactError, load_artifacts, open_session, pick
from focal_eval.service.core.errors import RequestError, invalid
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.validation import (
    Batch,
    check_gamma,
    check_ignore_index,
    make_batch,
)

logger = logging.getLogger(__name__)

Outputs = dict[str, npt.NDArray[Any]]
EVALUATION, METRICS = "evaluation", "metrics"  # the artifact kinds this task scores with


@dataclass(frozen=True)
class Defaults:
    """Parameters a request may omit: from settings, else from the evaluation manifest."""

    gamma: float
    ignore_index: int
    alpha: npt.NDArray[np.float32] | None

    def batch(
        self,
        logits: npt.NDArray[Any],
        labels: npt.NDArray[Any],
        alpha: npt.NDArray[Any] | None,
        gamma: Any,
        ignore_index: Any,
    ) -> Batch:
        """A validated batch from request values, each None replaced by its default.

        Raises:
            RequestError: 422 for any value out of its domain (see :func:`make_batch`).
        """
        return make_batch(
            logits,
            labels,
            alpha,
            self.gamma if gamma is None else check_gamma(gamma),
            self.ignore_index if ignore_index is None else check_ignore_index(ignore_index),
            self.alpha,
        )


CHUNK_ELEMENTS = 2**19
MAX_CHUNK_ROWS = 2**16


def chunk_rows(num_classes: int) -> int:
    """Rows per graph run: about 512K logits (2 MB), at most 65,536 rows.

    Both bound the graph's intermediates per run (per logit and per row). At least C rows,
    since every run also builds a C x C confusion matrix.
    """
    return max(min(CHUNK_ELEMENTS // num_classes, MAX_CHUNK_ROWS), num_classes)


class Scorer:
    """Scores validated batches with the evaluation graph; metrics from merged statistics."""

    def __init__(self, evaluation: Artifact, metrics: Artifact, settings: Settings) -> None:
        self.evaluation = evaluation
        self.metrics_artifact = metrics
        self._evaluation = open_session(evaluation, settings.threads)
        self._metrics = open_session(metrics, settings.threads)
        try:
            manifest_defaults = evaluation.defaults
            num_bins = manifest_defaults["num_bins"]
            gamma = check_gamma(manifest_defaults["gamma"])
            ignore_index = check_ignore_index(manifest_defaults["ignore_index"])
        except (KeyError, RequestError) as error:
            raise ArtifactError(
                f"{evaluation.path}: its manifest's defaults are not valid ({error})"
            ) from error
        if metrics.defaults.get("num_bins") != num_bins:
            raise ArtifactError(
                f"{metrics.path}: its num_bins {metrics.defaults.get('num_bins')} is not the"
                f" evaluation graph's {num_bins}: export them together"
            )
        self.defaults = Defaults(
            gamma=gamma if settings.gamma is None else settings.gamma,
            ignore_index=ignore_index if settings.ignore_index is None else settings.ignore_index,
            alpha=None if settings.alpha is None else np.asarray(settings.alpha, np.float32),
        )
        ungrouped = [e["name"] for e in evaluation.manifest["outputs"] if "group" not in e]
        if ungrouped:
            raise ArtifactError(f"{evaluation.path}: outputs {ungrouped} have no group")
        self.outputs = {output.name: output for output in evaluation.outputs}
        self.groups = {name: output.group for name, output in self.outputs.items()}
        self.statistics_names = self.names("statistics")
        self.per_sample_names = self.names("per_sample")

    def names(self, group: str, rank: int | None = None) -> list[str]:
        """Outputs of ``group`` (of ``rank`` dimensions, if given), in graph order.

        From the manifest: scalar metrics are ``names("metrics", 0)``, per-class ones
        ``names("metrics", 1)``; nothing in the service lists them again.
        """
        return [
            name
            for name, output in self.outputs.items()
            if output.group == group and (rank is None or len(output.shape) == rank)
        ]

    def row_bytes(self, names: Iterable[str]) -> int:
        """Bytes per row of the named per-sample outputs."""
        return sum(
            self.outputs[name].dtype.itemsize for name in names if self.groups[name] == "per_sample"
        )

    def statistics_bytes(self, num_classes: int) -> int:
        """Bytes of one batch's statistics at ``num_classes`` classes."""
        return sum(
            self.outputs[name].dtype.itemsize * self.outputs[name].elements(num_classes)
            for name in self.statistics_names
        )

    @classmethod
    def load(cls, settings: Settings) -> Scorer:
        """Find, verify and open the two graphs in ``settings.artifact_dir``.

        Raises:
            ArtifactError: either graph is missing, corrupt, or they do not belong together.
        """
        directory = settings.artifact_dir
        artifacts = load_artifacts(directory)
        evaluation = pick(artifacts, EVALUATION, directory)
        scorer = cls(evaluation, pick(artifacts, METRICS, directory), settings)
        logger.info(
            "loaded evaluation graph %s (sha256 %s) from %s",
            evaluation.path.name,
            evaluation.sha256[:12],
            settings.artifact_dir,
        )
        return scorer

    @property
    def model_id(self) -> str:
        """The evaluation graph's sha256."""
        return self.evaluation.sha256

    def score(self, batch: Batch, keep: Collection[str] | None = None) -> Outputs:
        """The evaluation graph's outputs for a validated batch, by name, in graph order.

        Per-sample outputs are returned only for the names in ``keep`` (all when None), so
        that a request that sends none back holds none. Large batches run in chunks of rows
        (:func:`chunk_rows`): per-sample outputs are filled in place, statistics summed, and
        the metrics computed once by the metrics graph from the sums (they are additive by
        design), so the graph's intermediates stay the size of a chunk, not of the batch.

        Raises:
            RequestError: 422 when finite logits still give an infinite loss (a float32
                overflow: logits more than the float32 range apart).
        """
        wanted = [
            name
            for name in self.evaluation.output_names
            if self.groups[name] != "per_sample" or keep is None or name in keep
        ]
        n, rows = len(batch.labels), chunk_rows(batch.num_classes)
        if n <= rows:
            outputs = self._checked(self._run(batch, slice(None)), 0)
            return {name: outputs[name] for name in wanted}
        per_sample: Outputs = {}
        statistics: Outputs = {}
        for start in range(0, n, rows):
            part = self._checked(self._run(batch, slice(start, start + rows)), start)
            for name in wanted:
                group = self.groups[name]
                if group == "per_sample":
                    if name not in per_sample:
                        per_sample[name] = np.empty(n, dtype=part[name].dtype)
                    per_sample[name][start : start + rows] = part[name]
                elif group == "statistics":
                    if name in statistics:
                        np.add(statistics[name], part[name], out=statistics[name])
                    else:
                        statistics[name] = part[name]
            del part
        merged = {**per_sample, **statistics, **self.compute_metrics(statistics)}
        return {name: merged[name] for name in wanted}

    def _run(self, batch: Batch, rows: slice) -> Outputs:
        feeds = {
            "logits": np.ascontiguousarray(batch.logits[rows], dtype=np.float32),
            "labels": batch.labels[rows],
            "alpha": batch.alpha,
            "gamma": np.asarray(batch.gamma, dtype=np.float32),
            "ignore_index": np.asarray(batch.ignore_index, dtype=np.int64),
        }
        values = self._evaluation.run(None, feeds)
        return dict(zip(self.evaluation.output_names, values, strict=True))

    @staticmethod
    def _checked(outputs: Outputs, first_row: int) -> Outputs:
        for name in ("cross_entropy", "focal_loss"):
            finite = np.isfinite(outputs[name])
            if not finite.all():
                row = first_row + int(np.argmin(finite))
                raise invalid(
                    f"logits: the {name.replace('_', ' ')} of row {row}"
                    " overflows float32 (logits spanning more than the float32 range, or alpha"
                    " too large); scale them down"
                )
        return outputs

    def compute_metrics(self, statistics: Mapping[str, npt.NDArray[Any]]) -> Outputs:
        """Metrics of (merged) statistics through the metrics graph, by name."""
        feeds = {name: statistics[name] for name in self.metrics_artifact.input_names}
        values = self._metrics.run(None, feeds)
        return dict(zip(self.metrics_artifact.output_names, values, strict=True))

    def warm_up(self) -> None:
        """Score a small batch through both graphs and check the counts add up.

        Raises:
            ArtifactError: the graphs run but give inconsistent results.
        """
        rng = np.random.default_rng(0)
        batch = make_batch(
            rng.standard_normal((16, 3)).astype(np.float32),
            np.arange(16) % 3,
            None,
            self.defaults.gamma,
            self.defaults.ignore_index,
        )
        outputs = self.score(batch)
        metrics = self.compute_metrics(outputs)
        valid = int(np.count_nonzero(batch.labels != batch.ignore_index))
        if int(outputs["confusion_matrix"].sum()) != valid or not 0 <= metrics["accuracy"] <= 1:
            raise ArtifactError(f"{self.evaluation.path}: warm-up batch gave inconsistent counts")
