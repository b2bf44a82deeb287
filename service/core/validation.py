"""Checks on decoded arrays, shared by every route, before anything reaches the graph.

The graph cannot raise: onnxruntime would wrap a label of -1 to class C - 1 and propagate NaN
without a word, so every value the graph would misread is refused here with a 422 that names
the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.service.core.errors import invalid, show
from focal_eval.service.core.tasks import BINARY, MULTICLASS, TASKS, graph_task

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
_FLOAT32_MAX = float(np.finfo(np.float32).max)
CHECK_ELEMENTS = 2**18  # logits checked for finiteness at once: a bounded temporary


@dataclass(frozen=True)
class Batch:
    """A validated batch, in its evaluation graph's input names.

    ``inputs`` holds the per-row inputs: ``logits`` ``(N, W)`` (float16 / float64 as sent:
    the scorer converts each chunk of rows to float32 as it runs, so that no float32 copy of
    the whole batch is ever held) and the labels (int64, ``(N,)`` for classes, ``(N, W)`` for
    labels). ``parameters`` holds the other inputs, one value each (``alpha`` per class for
    multi-class).
    """

    task: str
    inputs: dict[str, npt.NDArray[Any]]
    parameters: dict[str, Any]
    shape: tuple[int, ...]  # the labels' shape as sent: (N,) or (N, d1, ..., dk)

    @property
    def logits(self) -> npt.NDArray[np.floating[Any]]:
        """``(N, W)`` logits."""
        return self.inputs["logits"]

    @property
    def rows(self) -> int:
        """N."""
        return int(self.logits.shape[0])

    @property
    def width(self) -> int:
        """W: classes, or labels."""
        return int(self.logits.shape[1])


def multiclass_batch(
    logits: npt.NDArray[Any],
    labels: npt.NDArray[Any],
    alpha: npt.NDArray[Any] | None,
    gamma: float,
    ignore_index: int,
    default_alpha: npt.NDArray[np.float32] | None = None,
) -> Batch:
    """Check and convert decoded multi-class arrays into a :class:`Batch`.

    ``alpha`` None means ``default_alpha`` (the server's setting), or all ones without one.

    ``logits`` is ``(N, C)`` or segmentation-shaped ``(N, C, d1, ..., dk)``, which is flattened
    to ``(N * d1 * ... * dk, C)`` with the class dimension last (per-sample outputs then follow
    the labels' row-major order). float16 / float64 logits are kept (scored in float32, and
    float64 beyond the float32 range is refused as non-finite); integer logits become
    float32; any integer label dtype becomes int64.

    Raises:
        RequestError: 422 naming the field: dtype, shape, label range (non-finite logits are
            the scorer's to refuse: :func:`check_finite`).
    """
    batch_size(logits)
    logits, flat_labels, shape = flat_rows(logits, labels, expected_labels="classes")
    c = logits.shape[1]
    _check_label_range(flat_labels, c, ignore_index)
    if alpha is None and default_alpha is not None:
        if len(default_alpha) != c:
            raise invalid(
                f"alpha: the server's default alpha (FOCAL_ALPHA) has {len(default_alpha)}"
                f" values, but the batch has {c} classes; send alpha with the request"
            )
        alpha = default_alpha
    parameters = {
        "alpha": check_alpha(alpha, c),
        "gamma": check_gamma(gamma),
        "ignore_index": ignore_index,
    }
    return Batch(MULTICLASS, {"logits": logits, "labels": flat_labels}, parameters, shape)


def flat_rows(
    logits: npt.NDArray[Any], labels: npt.NDArray[Any], expected_labels: str
) -> tuple[npt.NDArray[np.floating[Any]], IntArray, tuple[int, ...]]:
    """Logits ``(N, W)`` and flat int64 labels from ``(N, W, d1, ...)`` ones, checked.

    ``expected_labels`` is ``"classes"`` (labels ``(N, d1, ...)``, one per row) or
    ``"labels"`` (labels of the logits' shape, ``W`` per row). Segmentation-shaped logits are
    flattened with dimension 1 last; float16 / float64 logits keep their dtype, integer ones
    become float32.

    Raises:
        RequestError: 422 for a dtype or a shape that does not match.
    """
    if logits.dtype.kind != "f" or logits.dtype.itemsize not in (2, 4, 8):
        logits = _float_array("logits", logits)
    n, width = logits.shape[0], logits.shape[1]
    labels = _label_array(labels)
    expected = (n, *logits.shape[2:]) if expected_labels == "classes" else logits.shape
    if labels.shape != expected:
        raise invalid(
            f"labels: expected shape {list(expected)} to match logits {list(logits.shape)},"
            f" got {list(labels.shape)}"
        )
    shape = tuple(labels.shape)
    if logits.ndim > 2:
        logits = np.moveaxis(logits, 1, -1).reshape(-1, width)
        if expected_labels == "labels":
            labels = np.moveaxis(labels, 1, -1).reshape(-1, width)
    flat_labels = labels.reshape(-1) if expected_labels == "classes" else labels
    return np.ascontiguousarray(logits), np.ascontiguousarray(flat_labels), shape


def batch_size(
    logits: npt.NDArray[Any], task: str = MULTICLASS, max_width: int | None = None
) -> tuple[int, int]:
    """Rows and width of a batch's logits: ``(N * d1 * ..., W)``.

    Logits are ``(N, W)`` or ``(N, W, d1, ...)``, W classes (at least 2) or labels (at least
    1); a binary batch's are ``(N,)`` or ``(N, 1)``.

    Raises:
        RequestError: 422 for no rows, another number of dimensions, too few classes or
            labels, or more than ``max_width`` (``FOCAL_MAX_CLASSES``: the per-class work is
            bounded).
    """
    shape = list(logits.shape)
    if logits.ndim >= 1 and shape[0] == 0:
        raise invalid("logits: expected at least one row, got an empty batch")
    if task == BINARY and logits.ndim == 1:
        return shape[0], 1
    if logits.ndim < 2:
        raise invalid(f"logits: expected shape (N, C) or (N, C, d1, ...), got {shape}")
    width, noun = shape[1], TASKS[graph_task(task)].width
    least = 2 if task == MULTICLASS else 1
    if width < least:
        raise invalid(f"logits: expected at least {least} {noun} (dimension 1), got {width}")
    if max_width is not None and width > max_width:
        raise invalid(
            f"logits: {width} {noun} (dimension 1) is more than this server scores"
            f" ({max_width}, FOCAL_MAX_CLASSES)"
        )
    if logits.size == 0:
        raise invalid(
            f"logits: expected at least one row, got shape {shape} (a spatial dimension of 0)"
        )
    return logits.size // width, width


def check_gamma(gamma: Any) -> float:
    """``gamma`` is a finite real number >= 0."""
    if isinstance(gamma, bool) or not isinstance(gamma, int | float | np.floating | np.integer):
        raise invalid(f"gamma: expected a number, got {show(gamma)}")
    if not (math.isfinite(gamma) and gamma >= 0):
        raise invalid(f"gamma: expected a finite number >= 0, got {gamma}")
    if gamma > _FLOAT32_MAX:  # the graph takes gamma as float32: it would become inf
        raise invalid(f"gamma: {gamma} is beyond the float32 range the graph computes in")
    return float(gamma)


def check_ignore_index(ignore_index: Any) -> int:
    """``ignore_index`` is an integer (JSON number without a fraction)."""
    if isinstance(ignore_index, float) and not -(2**63) <= ignore_index < 2**63:  # huge JSON int
        raise invalid(f"ignore_index: {ignore_index:.0f} is outside the int64 range")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer):
        raise invalid(f"ignore_index: expected an integer, got {show(ignore_index)}")
    if not -(2**63) <= int(ignore_index) < 2**63:
        raise invalid(f"ignore_index: {ignore_index} is outside the int64 range")
    return int(ignore_index)


def check_count(name: str, count: Any) -> int:
    """A whole number >= 1 (the bins a manifest records)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise invalid(f"{name}: expected a whole number >= 1, got {show(count)}")
    return count


def check_bool(name: str, value: Any) -> bool:
    """A JSON ``true`` / ``false``."""
    if not isinstance(value, bool):
        raise invalid(f"{name}: expected true or false, got {show(value)}")
    return value


def check_source_type(source: Any) -> str | None:
    """A monitoring source tag is a string (which ones are allowed is a server setting)."""
    if source is not None and not isinstance(source, str):
        raise invalid(f"source: expected a string, got {show(source)}")
    return source


def check_alpha(alpha: Any, num_classes: int) -> FloatArray:
    """``alpha``: None (all ones) or ``(C,)`` finite values >= 0."""
    if alpha is None:
        return np.ones(num_classes, dtype=np.float32)
    if not isinstance(alpha, np.ndarray):
        raise invalid(
            f"alpha: expected {num_classes} values (one per class) for a multiclass batch,"
            f" got {show(alpha)}"
        )
    if alpha.shape != (num_classes,):
        raise invalid(
            f"alpha: expected {num_classes} values (one per class), got shape {list(alpha.shape)}"
        )
    values = np.array(_float_array("alpha", alpha), dtype=np.float32)  # not a view of the body
    if not np.isfinite(values).all() or (values < 0).any():
        raise invalid("alpha: expected finite values >= 0")
    return values


def _float_array(name: str, values: npt.NDArray[Any]) -> FloatArray:
    if values.dtype == np.float32:
        return values
    if values.dtype.kind not in "fiu" or values.dtype.kind == "b":
        raise invalid(f"{name}: expected numbers, got {values.dtype} values")
    with np.errstate(over="ignore"):
        return values.astype(np.float32)


def _label_array(labels: npt.NDArray[Any]) -> IntArray:
    if labels.dtype.kind not in "iu":
        # JSON integers beyond 64 bits arrive as floats: say what is wrong with them
        if labels.dtype.kind == "f" and labels.size and np.abs(labels).max() >= 2**63:
            raise invalid("labels: values beyond the int64 range")
        kind = "floats" if labels.dtype.kind == "f" else f"{labels.dtype} values"
        raise invalid(f"labels: expected integers, got {kind}")
    if labels.dtype.kind == "u" and labels.size and labels.max() >= 2**63:
        raise invalid("labels: values beyond the int64 range")
    return labels.astype(np.int64, copy=False)


def check_finite(logits: npt.NDArray[np.floating[Any]]) -> None:
    """Refuse logits NaN or infinite in float32, looking at ``CHECK_ELEMENTS`` at a time.

    The scorer calls it once a run has found some: the fused kernel as it reads each row, or
    :func:`check_run_finite` before each run of a portable graph (:meth:`Scorer.score
    <focal_eval.service.core.scoring.Scorer.score>`), so that the 422 names the batch's first
    bad row.

    Raises:
        RequestError: 422 with how many values are, and the first row.
    """
    rows = max(1, CHECK_ELEMENTS // logits.shape[1])
    first = None
    bad = 0
    for start in range(0, len(logits), rows):
        with np.errstate(over="ignore"):
            block = logits[start : start + rows].astype(np.float32, copy=False)
        finite = np.isfinite(block)
        if not finite.all():
            bad += int(finite.size - np.count_nonzero(finite))
            if first is None:
                first = start + int(np.argwhere(~finite)[0][0])
    if first is not None:
        raise invalid(
            f"logits: {bad} values are NaN or infinite (first in row {first}); a float64 value"
            " beyond the float32 range counts as infinite"
        )


def check_run_finite(chunk: npt.NDArray[np.float32], logits: npt.NDArray[np.floating[Any]]) -> None:
    """Refuse a graph run's float32 ``chunk`` of ``logits`` if a value is NaN or infinite.

    One look at the run's own inputs, in the thread that runs it; only on a refusal is the
    whole batch looked at (:func:`check_finite`), for the 422 that names its first bad row.

    Raises:
        RequestError: 422 as :func:`check_finite`'s.
    """
    if not np.isfinite(chunk).all():
        check_finite(logits)


def _check_label_range(labels: IntArray, num_classes: int, ignore_index: int) -> None:
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        first = int(np.argmax(bad))
        raise invalid(
            f"labels: {int(bad.sum())} values outside [0, {num_classes}) that are not"
            f" ignore_index ({ignore_index}); first {int(labels[first])} at index {first}"
        )
