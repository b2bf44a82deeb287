"""From a decoded request to scored outputs, whatever the protocol that decoded it.

Every protocol (``/score``, the Open Inference Protocol, a future gRPC servicer) decodes its
body into a :class:`Decoded` and calls :func:`score_decoded`, which reads the task from the
shapes, admits the work against the memory budget, refuses a batch the monitor cannot take
when it was asked to, validates, runs the task's graphs, and feeds the monitor.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from focal_eval.service.artifacts import ArtifactError
from focal_eval.service.core.errors import RequestError, invalid
from focal_eval.service.core.multilabel import multilabel_batch
from focal_eval.service.core.probabilities import check_inputs_kind, logits_of
from focal_eval.service.core.scoring import Outputs, Scorer, Scorers
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.tasks import MULTICLASS, graph_task, task_of
from focal_eval.service.core.validation import (
    Batch,
    batch_size,
    check_bool,
    check_gamma,
    check_ignore_index,
    multiclass_batch,
)
from focal_eval.service.http.body import Body
from focal_eval.service.memory import costs
from focal_eval.service.memory.budget import Reservation

if TYPE_CHECKING:  # the runtime brings the web stack, which focal evaluate does without
    from focal_eval.service.core.runtime import Runtime


@dataclass(frozen=True)
class Decoded:
    """A decoded request: its arrays as sent, its parameters (None: the server's default)."""

    logits: npt.NDArray[Any]
    labels: npt.NDArray[Any]
    alpha: Any  # per class (an array), or one number (multi-label); None: the default
    gamma: Any
    ignore_index: Any
    monitor: bool | None
    source: str | None
    task: Any = None  # multiclass, multilabel or binary; None: from the shapes
    inputs: Any = None  # logits (None) or probabilities
    threshold: Any = None
    ranking: Any = None  # multi-class AUROC and AP (the ranking graph), off by default


@dataclass(frozen=True)
class Scored:
    """A scored batch: its outputs, and whether (or why not) the monitor took it."""

    batch: Batch
    outputs: Outputs
    scorers: list[Scorer]  # the task's, then ranking's if it ran
    monitored: bool
    unmonitored_reason: str | None


def score_decoded(
    runtime: Runtime,
    route: str,
    decoded: Decoded,
    per_sample: Collection[str] | None,
    body: Body,
    reservation: Reservation,
    task: str | None = None,
) -> Scored:
    """Admit, validate and score ``decoded``, keeping the ``per_sample`` outputs named.

    ``per_sample`` None keeps every per-sample output of the task's graph. ``task`` is the
    one a protocol serves (a v2 model); None reads it from the request and the shapes.
    ``body`` is the buffer the arrays may be views of (their memory is already counted).

    Raises:
        RequestError: 422 for any invalid value (also a batch that asked to be monitored and
            cannot be, or a task this server has no graphs for), 503 / 413 when the work
            does not fit in the memory budget.
    """
    scorers, settings = runtime.ready_scorers(), runtime.settings
    name = task or task_of(decoded.logits.shape, decoded.labels.shape, decoded.task)
    rows, width = batch_size(decoded.logits, name, settings.max_classes)  # none: 422 first
    scorer = scorer_for(scorers, name)
    ranking = _ranking(scorers, name, decoded.ranking)
    kind = check_inputs_kind(decoded.inputs)
    choice = runtime.monitoring(decoded.monitor, decoded.source)
    names = scorer.per_sample_names if per_sample is None else per_sample
    keep = {*names, "focal_loss"} if choice.wanted else set(names)  # loss histogram
    workers = reserve_batch(
        reservation,
        body,
        (decoded.logits, decoded.labels, decoded.alpha),
        name,
        scorer.row_bytes(keep),
        settings.max_classes,
        kind,
        _histogram_bins(scorer if ranking is None else ranking),
        scorer.chunks_at_once(rows, width, ranking),
    )
    runtime.check_monitorable(choice, graph_task(name), width)
    logits = decoded.logits if kind == "logits" else logits_of(name, decoded.logits)
    batch = validated(scorer, settings, name, logits, decoded)
    outputs = scorer.score(batch, keep, ranking, workers=workers)
    reason = runtime.record(route, choice, graph_task(name), batch.rows, outputs)
    ran = [scorer] if ranking is None else [scorer, ranking]
    return Scored(batch, outputs, ran, choice.wanted and reason is None, reason)


def scorer_for(scorers: Scorers, task: str) -> Scorer:
    """The scorer of ``task``.

    Raises:
        RequestError: 422 when this server's artifacts have no graphs for it.
    """
    scorer = scorers.multiclass if task == MULTICLASS else scorers.multilabel
    if scorer is None:
        raise invalid(
            f"task: this server has no {graph_task(task)} graphs (FOCAL_ARTIFACT_DIR holds no"
            " multilabel_evaluation and multilabel_metrics artifacts)"
        )
    return scorer


def validated(
    scorer: Scorer, settings: Settings, task: str, logits: npt.NDArray[Any], decoded: Decoded
) -> Batch:
    """``decoded`` as a validated batch of ``task``, its omitted parameters the defaults.

    Defaults: the settings (``FOCAL_GAMMA``, ``FOCAL_IGNORE_INDEX``, ``FOCAL_ALPHA`` for
    classes), else the task's evaluation manifest.

    Raises:
        RequestError: 422 for any value out of its domain.
    """
    defaults = scorer.defaults
    gamma = _default(decoded.gamma, settings.gamma, defaults.get("gamma"), check_gamma)
    ignore_index = _default(
        decoded.ignore_index,
        settings.ignore_index,
        defaults.get("ignore_index"),
        check_ignore_index,
    )
    if task == MULTICLASS:
        if decoded.threshold is not None:
            raise invalid("threshold: multiclass batches are scored by their argmax; remove it")
        default_alpha = None if settings.alpha is None else np.asarray(settings.alpha, np.float32)
        return multiclass_batch(
            logits, decoded.labels, decoded.alpha, gamma, ignore_index, default_alpha
        )
    alpha = defaults.get("alpha") if decoded.alpha is None else decoded.alpha
    threshold = defaults.get("threshold") if decoded.threshold is None else decoded.threshold
    return multilabel_batch(task, logits, decoded.labels, alpha, gamma, threshold, ignore_index)


def reported_parameters(batch: Batch, alpha_sent: Any, settings: Settings) -> dict[str, Any]:
    """The parameters a batch was scored with, as answers report them.

    A multi-class alpha neither sent nor set (``FOCAL_ALPHA``) is all ones: reported null.
    """
    parameters = dict(batch.parameters)
    if batch.task == MULTICLASS and alpha_sent is None and settings.alpha is None:
        parameters["alpha"] = None
    return parameters


def _histogram_bins(scorer: Scorer) -> int:
    """Score bins per class or label of a scorer's histograms (0: it has none)."""
    return int(scorer.defaults.get("score_bins", 0))


def _default(requested: Any, setting: Any, manifest: Any, check: Any) -> Any:
    if requested is not None:
        return check(requested)
    return setting if setting is not None else manifest


def _ranking(scorers: Scorers, task: str, requested: Any) -> Scorer | None:
    """The ranking scorer when a multi-class request asks for it.

    Raises:
        RequestError: 422 for a non-boolean, ranking of another task (it has its own), or a
            server without the ranking graphs.
    """
    if requested is None or not check_bool("ranking", requested):
        return None
    if task != MULTICLASS:
        raise invalid(
            f"ranking: {task} batches always carry AUROC and average precision; remove it"
        )
    if scorers.ranking is None:
        raise invalid(
            "ranking: this server has no ranking graphs (FOCAL_ARTIFACT_DIR holds no ranking"
            " and ranking_metrics artifacts)"
        )
    return scorers.ranking


def reserve_batch(
    reservation: Reservation,
    body: Body,
    arrays: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any] | float | None],
    task: str,
    kept_bytes_per_row: int,
    max_width: int,
    inputs: str = "logits",
    histogram_bins: int = 0,
    chunks_at_once: int = 1,
) -> int:
    """Admit validating and scoring a decoded batch: resize the reservation to its cost.

    Of ``arrays`` (logits, labels, alpha: an array, one number or None), views of ``body``
    cost nothing more; arrays of their own count by size. ``histogram_bins``: score bins
    per class (ranking) or label; ``chunks_at_once``: how many chunks the scorer would run
    side by side (:meth:`~focal_eval.service.core.scoring.Scorer.chunks_at_once`). Work that
    does not fit so is admitted with its chunks in turn, if that fits.

    Returns:
        How many chunks the reservation priced at once: what scoring may run.

    Raises:
        RequestError: 422 for logits of no rows, too few or too many classes or labels;
            503 / 413 when the work does not fit in the budget now / ever.
    """
    logits, labels, alpha = arrays
    n, width = batch_size(logits, task, max_width)
    view = np.frombuffer(body, np.uint8)
    held = costs.received(len(view)) + sum(
        array.nbytes
        for array in (logits, labels, alpha)
        if isinstance(array, np.ndarray) and not np.may_share_memory(array, view)
    )
    work = costs.conversion(logits, labels) + (
        costs.probabilities(logits) if inputs == "probabilities" else 0
    )
    what = f"batch (N={n}, {'C' if task == MULTICLASS else 'L'}={width})"
    kind = graph_task(task)

    def cost(at_once: int) -> int:
        scoring = costs.scoring(kind, n, width, kept_bytes_per_row, histogram_bins, at_once)
        return held + work + scoring

    if chunks_at_once > 1:
        try:
            reservation.resize(cost(chunks_at_once), what)
            return chunks_at_once
        except RequestError:
            pass  # then in turn, if that fits (the reservation is unchanged)
    reservation.resize(cost(1), what)
    return 1


def warm_up(scorers: Scorers, settings: Settings) -> None:
    """Score a small batch of each task and check its two graphs agree on the metrics.

    The evaluation graph's metrics of the batch must equal the metrics graph's of the
    batch's statistics: the pair was exported together and runs here.

    Raises:
        ArtifactError: a graph fails on the batch, or the pair disagrees.
    """
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((16, 3)).astype(np.float32)
    classes, labels = np.arange(16) % 3, (rng.random((16, 3)) < 0.5).astype(np.int64)
    for scorer in scorers.available():
        multiclass = scorer.task.labels == "labels"  # the multi-class and ranking graphs
        # alpha given: the warm-up does not depend on FOCAL_ALPHA's length
        alpha = np.ones(3, np.float32) if multiclass else None
        decoded = Decoded(logits, classes if multiclass else labels, alpha, None, None, None, None)
        task = MULTICLASS if multiclass else scorer.task.name
        try:
            defaults = scorers.multiclass if multiclass else scorer
            outputs = scorer.score(validated(defaults, settings, task, logits, decoded))
        except RequestError as error:
            raise ArtifactError(
                f"{scorer.evaluation.path}: warm-up batch failed ({error.message})"
            ) from error
        recomputed = scorer.compute_metrics(outputs)
        for name in scorer.names("metrics"):
            if not np.allclose(outputs[name], recomputed[name], rtol=1e-6, equal_nan=True):
                raise ArtifactError(
                    f"{scorer.evaluation.path}: warm-up batch gave {name} {outputs[name]} but"
                    f" its metrics graph {recomputed[name]}: export the pair together"
                )
