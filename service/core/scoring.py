"""The scorers: each task's evaluation and metrics graphs in onnxruntime, checked, warmed up.

One ``InferenceSession`` per graph serves every request (``run`` is thread-safe and releases
the GIL); callers run it off the event loop. A :class:`Scorer` knows nothing of its task: it
feeds a validated :class:`~focal_eval.service.core.validation.Batch` to the graph by the
input names of its manifest, and reads the outputs by their manifest groups.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime

from focal_eval.service.artifacts import (
    RELEASE_ARENA,
    Artifact,
    ArtifactError,
    load_artifacts,
    open_session,
    pick,
)
from focal_eval.service.core import chunks
from focal_eval.service.core.chunks import Outputs as Outputs  # the scorers' results, by name
from focal_eval.service.core.errors import RequestError, invalid
from focal_eval.service.core.fast_path import FastPath, open_fast_path
from focal_eval.service.core.multilabel import check_sigmoid_alpha, check_threshold
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.tasks import MULTICLASS, MULTILABEL, RANKING, TASKS, Task
from focal_eval.service.core.validation import (
    Batch,
    check_count,
    check_finite,
    check_gamma,
    check_ignore_index,
    check_run_finite,
)
from focal_eval.service.kernel import NON_FINITE

logger = logging.getLogger(__name__)

CHUNK_ELEMENTS = 2**19
FUSED_CHUNK_ELEMENTS = 4 * CHUNK_ELEMENTS
MAX_CHUNK_ROWS = 2**16
QUIET = onnxruntime.RunOptions()
"""Run options for the fused graphs: a kernel's refusal (non-finite logits, which any client
can send) is the scorer's to answer, not a line in onnxruntime's error log."""
QUIET.log_severity_level = 4  # fatal only


def chunk_rows(width: int, fused: bool = False) -> int:
    """Rows per graph run: about 512K logits (2 MB), at most 65,536 rows.

    Both bound the graph's intermediates per run (per logit and per row). At least ``width``
    rows, since every run also builds its per-class statistics (a C x C confusion matrix).
    A ``fused`` kernel keeps nothing per logit but a float32 copy of the chunk (when the
    logits are not float32 already): 4 bytes a logit where the portable graph's intermediates
    take 16, so its runs take four times the logits within the same bound, and build the
    C x C statistics a quarter as often (0.72x the time at 10,000 x 1,000).
    """
    elements = FUSED_CHUNK_ELEMENTS if fused else CHUNK_ELEMENTS
    return max(min(elements // width, MAX_CHUNK_ROWS), width)


class Scorer:
    """Scores validated batches with an evaluation graph; metrics from merged statistics.

    ``statistics``, the task's statistics-only graph, scores the chunks of a large batch when
    the fast path is not live (without it, the evaluation graph does, computing metrics per
    chunk that are thrown away). Its chunks run side by side: ``threads`` workers of the
    scorer's pool each take a contiguous share of them (:mod:`~focal_eval.service.core.chunks`)
    and run it as one-thread runs. Most of the graph's nodes are too small to share out, so
    one run over two threads spent much of its time waking the other thread; two one-thread
    runs keep both cores busy (0.63x the time at 100,000 x 100, docs/numerics.md). The
    session keeps onnxruntime's memory arena on, so that a batch's chunks reuse the first
    chunks' memory instead of mapping and faulting in fresh pages for every intermediate
    (0.48x the time at 100,000 x 100 under the server's allocator settings); the arena is
    released when the batch is scored, so it holds at most the chunks of the batches being
    scored, which their reservations price (:meth:`chunks_at_once`).
    """

    def __init__(
        self,
        task: Task,
        evaluation: Artifact,
        metrics: Artifact,
        threads: int,
        statistics: Artifact | None = None,
    ) -> None:
        self.task = task
        self.evaluation = evaluation
        self.metrics_artifact = metrics
        self._evaluation = open_session(evaluation, threads)
        self._metrics = open_session(metrics, threads)
        _check_defaults(evaluation, task)
        _check_exported_together(metrics, evaluation)
        self._statistics: onnxruntime.InferenceSession | None = None
        self._statistics_outputs: list[str] = []
        self._release_feeds: dict[str, npt.NDArray[Any]] = {}
        self._chunk_pool: ThreadPoolExecutor | None = None
        self.chunk_workers = 1
        if statistics is not None:
            _check_exported_together(statistics, evaluation)
            _check_statistics_signature(statistics, evaluation)
            self._statistics = open_session(statistics, 1, arena=True)
            if threads > 1:  # its idle threads end when the scorer is collected
                self.chunk_workers = threads
                self._chunk_pool = ThreadPoolExecutor(threads, f"focal-{task.name}-chunks")
            self._statistics_outputs = statistics.output_names
            # one row of zeros, width one, every label ignored (ignore_index 0)
            self._release_feeds = {
                entry["name"]: np.zeros(
                    [1 if isinstance(size, str) else size for size in entry["shape"]],
                    dtype=entry["dtype"],
                )
                for entry in statistics.manifest["inputs"]
            }
        ungrouped = [e["name"] for e in evaluation.manifest["outputs"] if "group" not in e]
        if ungrouped:
            raise ArtifactError(f"{evaluation.path}: outputs {ungrouped} have no group")
        self.outputs = {output.name: output for output in evaluation.outputs}
        self.groups = {name: output.group for name, output in self.outputs.items()}
        self.statistics_names = self.names("statistics")
        self.per_sample_names = self.names("per_sample")
        self._input_dtypes = {
            e["name"]: np.dtype(e["dtype"]) for e in evaluation.manifest["inputs"]
        }
        self.fast_path = FastPath("off", "not opened yet (Scorer.open_fast_path)")
        # multi-class: the evaluation and the ranking in one fused graph (ranking's state)
        self.ranking_path = FastPath("off", "not opened yet (Scorer.open_fast_path)")

    def names(self, group: str, rank: int | None = None) -> list[str]:
        """Outputs of ``group`` (of ``rank`` dimensions, if given), in graph order.

        From the manifest: scalar metrics are ``names("metrics", 0)``, per-class (or
        per-label) ones ``names("metrics", 1)``; nothing in the service lists them again.
        """
        return [
            name
            for name, output in self.outputs.items()
            if output.group == group and (rank is None or len(output.shape) == rank)
        ]

    def row_bytes(self, names: Iterable[str]) -> int:
        """Bytes per row of the named outputs that are this graph's per-sample ones."""
        return sum(
            self.outputs[name].dtype.itemsize
            for name in names
            if self.groups.get(name) == "per_sample"
        )

    def statistics_bytes(self, width: int) -> int:
        """Bytes of one batch's statistics at ``width`` classes (or labels)."""
        return sum(
            self.outputs[name].dtype.itemsize * self.outputs[name].elements(width)
            for name in self.statistics_names
        )

    @property
    def model_id(self) -> str:
        """The evaluation graph's sha256."""
        return self.evaluation.sha256

    @property
    def defaults(self) -> dict[str, Any]:
        """The parameters recorded in the evaluation graph's manifest."""
        return self.evaluation.defaults

    def score(
        self,
        batch: Batch,
        keep: Collection[str] | None = None,
        ranking: Scorer | None = None,
        *,
        checked: bool = False,
        workers: int | None = None,
    ) -> Outputs:
        """The evaluation graph's outputs for a validated batch, by name, in graph order.

        Per-sample outputs are returned only for the names in ``keep`` (all when None), so
        that a request that sends none back holds none. Large batches run in chunks of rows
        (:func:`chunk_rows`): per-sample outputs are filled in place, statistics summed, and
        the metrics computed once by the metrics graph from the sums (they are additive by
        design), so the graph's intermediates stay the size of a chunk, not of the batch. The
        fused graph, when the fast path is live (:mod:`~focal_eval.service.core.fast_path`),
        stands in for the evaluation graph; it gives no metrics, so they always come from the
        metrics graph. With ``ranking`` (the multi-class ranking scorer), its outputs follow:
        from the same pass over the logits when the ranked fast path is live, else from its
        own graph. ``workers``: how many chunks of the portable path may run at once (by
        default all the pool's; the reservation says how many it priced, :meth:`chunks_at_once`).

        Non-finite logits are refused: by the fused kernel as it reads each row, else before
        each run of a portable graph, in its worker, by a look at its chunk's float32 logits
        (:func:`~focal_eval.service.core.validation.check_finite` then names the batch's first
        bad row); not when ``checked``: a run over the same logits has refused them already.

        Raises:
            RequestError: 422 for a NaN or infinite logit, and when finite logits still give
                an infinite loss (a float32 overflow: logits more than the float32 range apart).
        """
        wanted = [
            name
            for name in self.evaluation.output_names
            if self.groups[name] != "per_sample" or keep is None or name in keep
        ]
        ranked = ranking is not None and self.ranking_path.live
        n, rows = batch.rows, chunk_rows(batch.width)
        if n <= rows and not self.fast_path.live and not ranked:  # the graph's own metrics
            outputs = self._run(batch, slice(None), check=not checked)
            scored = {name: outputs[name] for name in wanted}
        else:
            path = self.ranking_path if ranked else self.fast_path
            groups = {**self.groups, **(ranking.groups if ranking is not None else {})}
            summed = wanted + (ranking.statistics_names if ranked and ranking else [])
            per_sample, statistics = self._summed(batch, path, summed, groups, not checked, workers)
            scored = {**per_sample, **statistics, **self.compute_metrics(statistics)}
            if ranked and ranking is not None:
                scored |= ranking.compute_metrics(statistics)
                return {name: scored[name] for name in (*wanted, *ranking.output_names)}
            scored = {name: scored[name] for name in wanted}
        if ranking is not None:
            scored.update(ranking.score(batch, checked=True, workers=workers))
        return scored

    def _summed(
        self,
        batch: Batch,
        path: FastPath,
        names: list[str],
        groups: Mapping[str, str],
        check: bool,
        workers: int | None,
    ) -> tuple[Outputs, Outputs]:
        """``names``' per-sample values filled in and statistics summed, chunk by chunk.

        The statistics graph's chunks run side by side, :meth:`chunks_at_once` at a time (at
        most ``workers``, if given), when there is a pool
        (:func:`~focal_eval.service.core.chunks.side_by_side`), else in turn; its arena is
        released at the end. ``check``: each run first checks its logits.
        """
        n, rows = batch.rows, chunk_rows(batch.width, path.live)
        kept = {name: groups[name] for name in names if groups[name] in chunks.KEPT_GROUPS}
        in_arena = self._statistics_serves(path)
        pool = self._chunk_pool if in_arena else None
        at_once = self.chunks_at_once(n, batch.width) if pool else 1
        if workers is not None:
            at_once = min(at_once, workers)

        def run(rows: slice) -> Outputs:
            return self._run(batch, rows, path, check)

        try:
            if pool is None or at_once == 1:
                return chunks.in_turn(run, chunks.spans(n, rows), n, kept, in_arena)
            dtypes = {name: self.outputs[name].dtype for name in kept}
            return chunks.side_by_side(
                run, chunks.spans(n, rows, at_once), dtypes, kept, pool, at_once
            )
        finally:
            if in_arena:
                self._release_arena()

    def chunks_at_once(self, rows: int, width: int, ranking: Scorer | None = None) -> int:
        """How many chunks of a batch of ``rows`` x ``width`` hold their work at once.

        One, unless a statistics graph scores the chunks side by side (no fast path): this
        scorer's, or with ``ranking``, the ranking scorer's when no fused graph ranks.
        """
        at_once = 1
        if self._chunk_pool is not None and not self.fast_path.live:
            at_once = min(self.chunk_workers, -(-rows // chunk_rows(width)))
        if ranking is not None and not self.ranking_path.live:
            at_once = max(at_once, ranking.chunks_at_once(rows, width))
        return at_once

    def _statistics_serves(self, path: FastPath | None) -> bool:
        """Whether the statistics-only graph runs a chunk: there is one, and ``path`` is not live.

        ``path`` is given for a chunk (None for a whole batch in one run).
        """
        return path is not None and not path.live and self._statistics is not None

    def _release_arena(self) -> None:
        """Free the statistics session's arena: a run on one row that releases it at its end.

        onnxruntime frees arena regions only at the end of a run, those no tensor holds then
        (all but the first, small one). A failure is logged, not raised: it must not hide the
        batch's own error, and the next batch's release frees what this one kept.
        """
        assert self._statistics is not None
        try:
            self._statistics.run(None, self._release_feeds, RELEASE_ARENA)
        except Exception:  # onnxruntime raises its own unexported exception types
            logger.exception("%s: releasing the statistics graph's arena failed", self.task.name)

    @property
    def output_names(self) -> list[str]:
        """The evaluation graph's output names."""
        return self.evaluation.output_names

    def _run(
        self, batch: Batch, rows: slice, path: FastPath | None = None, check: bool = False
    ) -> Outputs:
        """One graph run on ``rows`` of the batch: inputs by the manifest's names and dtypes.

        ``path``'s fused graph when it is live (by default the fast path), else, for a chunk
        (``path`` given), the statistics-only graph if there is one, else the portable
        evaluation graph. ``check``: a portable graph's run first refuses non-finite logits
        (a fused kernel refuses them as it reads each row). The outputs are checked as the run
        ends (:meth:`_checked`).

        Raises:
            RequestError: 422 for a NaN or infinite logit, naming the batch's first, or for a
                per-sample value that overflows float32.
        """
        with np.errstate(over="ignore"):  # a float64 logit past float32's range: inf, refused
            feeds = {
                name: np.ascontiguousarray(batch.inputs[name][rows], dtype=dtype)
                if name in batch.inputs
                else np.asarray(batch.parameters[name], dtype=dtype)
                for name, dtype in self._input_dtypes.items()
            }
        fused = self.fast_path if path is None else path
        if fused.session is not None and fused.artifact is not None:
            names = fused.artifact.output_names
            try:
                outputs = dict(zip(names, fused.session.run(None, feeds, QUIET), strict=True))
            except Exception as error:  # onnxruntime raises its own unexported exception types
                if NON_FINITE not in str(error):
                    raise
                refused = error
            else:
                return self._checked(outputs, rows)
            check_finite(batch.logits)  # the 422 that names the first row (outside the except)
            raise refused  # the kernel saw what the check did not: a defect, answered 500
        if check:
            check_run_finite(feeds["logits"], batch.logits)
        if self._statistics_serves(path):
            assert self._statistics is not None
            names = self._statistics_outputs
            outputs = dict(zip(names, self._statistics.run(None, feeds), strict=True))
            return self._checked(outputs, rows)
        return self._checked(self._run_portable(feeds), rows)

    def _run_portable(self, feeds: Mapping[str, npt.NDArray[Any]]) -> Outputs:
        values = self._evaluation.run(None, {name: feeds[name] for name in self._input_dtypes})
        return dict(zip(self.evaluation.output_names, values, strict=True))

    def open_fast_path(
        self, artifacts: Mapping[str, Artifact], settings: Settings, ranking: Scorer | None
    ) -> None:
        """Serve through the task's fused graphs in ``artifacts`` if they load and agree.

        With ``ranking`` (multi-class), also the fused graph of the evaluation and the
        ranking together, checked against both portable graphs.
        """
        self.fast_path = open_fast_path(
            self.task.name,
            self.task.fused,
            artifacts,
            self.evaluation,
            self._run_portable,
            settings,
        )
        if ranking is not None:

            def both(feeds: Mapping[str, npt.NDArray[Any]]) -> Outputs:
                return {**self._run_portable(feeds), **ranking._run_portable(feeds)}

            self.ranking_path = open_fast_path(
                ranking.task.name, ranking.task.fused, artifacts, self.evaluation, both, settings
            )

    def _checked(self, outputs: Outputs, rows: slice) -> Outputs:
        """A run's ``outputs`` for ``rows`` of a batch, unless a per-sample value overflowed.

        Raises:
            RequestError: 422 naming the first such row; ``outputs`` is emptied first, so
                that the traceback keeps none of the run's arrays alive.
        """
        overflow = self._overflow(outputs, rows.start or 0)
        if overflow is None:
            return outputs
        outputs.clear()
        try:
            raise overflow
        finally:  # no cycle through this frame, which the traceback keeps with the run's
            del overflow

    def _overflow(self, outputs: Outputs, first_row: int) -> RequestError | None:
        """The 422 for the first non-finite per-sample value of a run, if there is one."""
        for name in self.per_sample_names:
            values = outputs[name]
            if values.dtype.kind != "f":
                continue
            finite = np.isfinite(values)
            if not finite.all():
                row = first_row + int(np.argmin(finite))
                return invalid(
                    f"logits: the {name.replace('_', ' ')} of row {row}"
                    " overflows float32 (logits spanning more than the float32 range, or alpha"
                    " too large); scale them down"
                )
        return None

    def compute_metrics(self, statistics: Mapping[str, npt.NDArray[Any]]) -> Outputs:
        """Metrics of (merged) statistics through the metrics graph, by name."""
        feeds = {name: statistics[name] for name in self.metrics_artifact.input_names}
        values = self._metrics.run(None, feeds)
        return dict(zip(self.metrics_artifact.output_names, values, strict=True))


def _check_exported_together(other: Artifact, evaluation: Artifact) -> None:
    """``other`` (a metrics or statistics-only graph) has ``evaluation``'s bins."""
    for shared in ("num_bins", "score_bins"):
        if other.defaults.get(shared) != evaluation.defaults.get(shared):
            raise ArtifactError(
                f"{other.path}: its {shared} {other.defaults.get(shared)} is not the"
                f" {evaluation.kind} graph's {evaluation.defaults.get(shared)}: export them"
                " together"
            )


def _check_statistics_signature(statistics: Artifact, evaluation: Artifact) -> None:
    """A statistics-only graph has the evaluation graph's inputs and outputs but the metrics."""
    inputs = evaluation.manifest["inputs"]
    outputs = [e for e in evaluation.manifest["outputs"] if e.get("group") != "metrics"]
    if statistics.manifest["inputs"] != inputs or statistics.manifest["outputs"] != outputs:
        raise ArtifactError(
            f"{statistics.path}: its inputs and outputs are not those of {evaluation.path.name}"
            " without the metrics: export them together"
        )


DEFAULT_CHECKS: dict[str, Callable[[Any], Any]] = {
    "gamma": check_gamma,
    "ignore_index": check_ignore_index,
    "alpha": check_sigmoid_alpha,
    "threshold": check_threshold,
    "num_bins": partial(check_count, "num_bins"),
    "score_bins": partial(check_count, "score_bins"),
}


def _check_defaults(evaluation: Artifact, task: Task) -> None:
    """The manifest records every default the task's requests may omit, each in its domain.

    Raises:
        ArtifactError: one is missing or out of its domain.
    """
    defaults = evaluation.defaults
    for name in task.defaults:
        problem = None
        if name not in defaults:
            problem = f"{name} is missing"
        else:
            try:
                DEFAULT_CHECKS[name](defaults[name])
            except RequestError as error:
                problem = error.message
        if problem is not None:
            raise ArtifactError(
                f"{evaluation.path}: its manifest's defaults are not valid ({problem})"
            )


@dataclass(frozen=True)
class Scorers:
    """Every task's scorer this server's artifacts allow; multi-class is always there."""

    multiclass: Scorer
    multilabel: Scorer | None
    ranking: Scorer | None  # the opt-in one-vs-rest ranking of multi-class batches

    @classmethod
    def load(cls, settings: Settings) -> Scorers:
        """Find, verify and open the graphs in ``settings.artifact_dir``.

        The multi-class evaluation and metrics graphs are required; the multi-label and
        ranking pairs are served when both graphs of the pair are there.

        Raises:
            ArtifactError: a graph is missing, corrupt, or does not belong with its pair.
        """
        directory = settings.artifact_dir
        artifacts = load_artifacts(directory)

        def pair(task: Task) -> Scorer:
            evaluation = pick(artifacts, task.evaluation, directory)
            metrics = pick(artifacts, task.metrics, directory)
            # optional: an export before it lacks it, and the evaluation graph scores chunks
            statistics = artifacts.get(task.statistics)
            return Scorer(task, evaluation, metrics, settings.threads, statistics)

        def optional(name: str) -> Scorer | None:
            task = TASKS[name]
            present = [kind in artifacts for kind in (task.evaluation, task.metrics)]
            if any(present) and not all(present):  # one of a pair: an incomplete export
                pair(task)  # raises, naming the missing one
            return pair(task) if all(present) else None

        scorers = cls(pair(TASKS[MULTICLASS]), optional(MULTILABEL), optional(RANKING))
        scorers.multiclass.open_fast_path(artifacts, settings, scorers.ranking)
        if scorers.multilabel is not None:
            scorers.multilabel.open_fast_path(artifacts, settings, None)
        for scorer in scorers.available():
            logger.info(
                "loaded %s graph %s (sha256 %s) from %s",
                scorer.task.name,
                scorer.evaluation.path.name,
                scorer.model_id[:12],
                directory,
            )
        return scorers

    def available(self) -> list[Scorer]:
        """The scorers loaded, multi-class first."""
        return [s for s in (self.multiclass, self.multilabel, self.ranking) if s is not None]

    @property
    def model_id(self) -> str:
        """The multi-class evaluation graph's sha256: the server's model id."""
        return self.multiclass.model_id

    def statistics_bytes(self, width: int) -> int:
        """Bytes of the largest statistics a monitored batch of ``width`` classes or labels gives.

        A source holds one task's, never ranking's histograms (those are per request).
        """
        multiclass = self.multiclass.statistics_bytes(width)
        multilabel = self.multilabel.statistics_bytes(width) if self.multilabel else 0
        return max(multiclass, multilabel)
