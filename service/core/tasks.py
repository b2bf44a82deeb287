"""The tasks a request can be: which graphs score it, and the rule that reads it from shapes.

A task is data: the artifact kinds of its evaluation, statistics-only and metrics graphs and
the graph input that holds its labels. ``binary`` is the multi-label task with one label,
reported as scalars.

The shape rule, for logits of shape ``(N, W, d1, ...)`` (or ``(N,)``) and labels as sent:

- logits ``(N,)`` or ``(N, 1)``, one logit a sample: ``binary``;
- labels of the logits' shape: ``multilabel`` (``W`` labels; ``(N, L, d1, ...)`` is flattened
  to ``(N * d1 * ..., L)`` as for classes);
- labels with one dimension fewer, the class one: ``multiclass`` (``W`` classes);
- anything else fits no task (422).

A request's ``task`` field names one when the shapes alone do not say what the user meant: a
one-logit model read as ``multilabel`` (per-label arrays) rather than ``binary`` (scalars).
It must fit the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from focal_eval.service.core.errors import invalid, show

MULTICLASS, MULTILABEL, BINARY = "multiclass", "multilabel", "binary"
RANKING = "ranking"  # not a task of its own: multi-class ranking metrics, opt-in
NAMES = (MULTICLASS, MULTILABEL, BINARY)


@dataclass(frozen=True)
class Task:
    """What scores a task: its graphs' artifact kinds and the input holding the labels."""

    name: str
    evaluation: str  # the evaluation graph's kind
    metrics: str  # the metrics graph's kind (metrics of merged statistics)
    statistics: str  # the statistics-only graph's kind: the chunks of a large batch
    labels: str  # the evaluation graph's input for the labels
    defaults: tuple[str, ...]  # what its manifest must record: what requests may omit
    width: str  # what dimension 1 counts: "classes" or "labels"
    unit: str  # one of them: "class" or "label"
    fused: str  # the fused graph's kind: the kernel's fast path (service.core.fast_path)
    # (ranking's takes the evaluation's inputs: it scores the evaluation and the ranking)


TASKS = {
    MULTICLASS: Task(
        MULTICLASS,
        "evaluation",
        "metrics",
        "evaluation_statistics",
        "labels",
        ("gamma", "ignore_index", "num_bins"),
        "classes",
        "class",
        "fused_evaluation",
    ),
    MULTILABEL: Task(
        MULTILABEL,
        "multilabel_evaluation",
        "multilabel_metrics",
        "multilabel_evaluation_statistics",
        "targets",
        ("gamma", "alpha", "threshold", "ignore_index", "num_bins", "score_bins"),
        "labels",
        "label",
        "fused_multilabel_evaluation",
    ),
    RANKING: Task(
        RANKING,
        "ranking",
        "ranking_metrics",
        "ranking_statistics",
        "labels",
        ("score_bins",),
        "classes",
        "class",
        "fused_evaluation_ranking",
    ),
}


def graph_task(name: str) -> str:
    """The task whose graphs score ``name``: binary batches are multi-label ones."""
    return MULTILABEL if name == BINARY else name


def task_of(logits: tuple[int, ...], labels: tuple[int, ...], requested: object) -> str:
    """The task of a batch with these shapes, or the one requested if its dimensions fit.

    Only the number of dimensions decides (and a dimension 1 of size 1, one logit a sample);
    validation then checks every size, with a message that names it.

    Example:
        >>> task_of((8, 3), (8,), None), task_of((8, 3), (8, 3), None), task_of((8,), (8,), None)
        ('multiclass', 'multilabel', 'binary')

    Raises:
        RequestError: 422 for a task name not known, or dimensions that fit no task (or not
            the one requested).
    """
    if requested is not None and requested not in NAMES:
        raise invalid(f"task: expected one of {', '.join(NAMES)}, got {show(requested)}")
    fits = _fitting(len(logits), len(labels), len(logits) == 2 and logits[1] == 1)
    if requested is None:
        if fits:
            return fits[0]
        raise invalid(
            f"labels: shape {list(labels)} with logits {list(logits)} fits no task: multiclass"
            " takes labels with one dimension fewer than the logits (the classes'), multilabel"
            " labels of the logits' shape (N, L, ...), binary one logit a sample"
        )
    if requested not in fits:
        raise invalid(
            f"task: {requested} does not fit logits {list(logits)} with labels {list(labels)}"
            f" ({_expected(requested)})"
        )
    return str(requested)


def _fitting(logits: int, labels: int, one_logit: bool) -> list[str]:
    """The tasks these numbers of dimensions fit, the one the rule picks first."""
    fits = []
    if (logits == 1 and labels == 1) or (one_logit and labels in (1, 2)):
        fits.append(BINARY)
    if logits >= 2 and labels == logits:
        fits.append(MULTILABEL)
    if logits >= 2 and labels == logits - 1:
        fits.append(MULTICLASS)
    return fits


def _expected(task: str) -> str:
    return {
        MULTICLASS: "it takes logits (N, C, ...) and labels (N, ...)",
        MULTILABEL: "it takes logits (N, L, ...) and labels of their shape",
        BINARY: "it takes one logit a sample, (N,) or (N, 1), and labels (N,)",
    }[task]
