"""The shape rule: which task a batch is, from its dimensions, or the one a request names."""

# ruff: noqa: E501 (tables of inputs and their exact error messages, one per line)

from __future__ import annotations

import pytest

from focal_eval.service.core.errors import RequestError
from focal_eval.service.core.tasks import task_of

NO_TASK = (
    "labels: shape {labels} with logits {logits} fits no task: multiclass takes labels with one"
    " dimension fewer than the logits (the classes'), multilabel labels of the logits' shape"
    " (N, L, ...), binary one logit a sample"
)


@pytest.mark.parametrize(
    ("logits", "labels", "task"),
    [
        pytest.param((8, 3), (8,), "multiclass", id="classes"),
        pytest.param((8, 3, 4, 5), (8, 4, 5), "multiclass", id="segmentation"),
        pytest.param((8, 3), (8, 3), "multilabel", id="labels"),
        pytest.param((8, 3, 4), (8, 3, 4), "multilabel", id="segmentation_labels"),
        pytest.param((8,), (8,), "binary", id="one_logit_flat"),
        pytest.param((8, 1), (8,), "binary", id="one_logit_column"),
        pytest.param((8, 1), (8, 1), "binary", id="one_logit_both_columns"),
        pytest.param((8, 3), (5,), "multiclass", id="sizes_are_validation's"),
    ],
)
def test_the_dimensions_decide_the_task(
    logits: tuple[int, ...], labels: tuple[int, ...], task: str
) -> None:
    assert task_of(logits, labels, None) == task


@pytest.mark.parametrize(
    ("logits", "labels", "requested"),
    [
        pytest.param((8, 1), (8, 1), "multilabel", id="one_label_as_multilabel"),
        pytest.param((8, 1), (8,), "multiclass", id="one_class_as_multiclass"),
        pytest.param((8, 3), (8,), "multiclass", id="the_rule's_own"),
    ],
)
def test_a_requested_task_that_fits_the_dimensions_is_taken(
    logits: tuple[int, ...], labels: tuple[int, ...], requested: str
) -> None:
    assert task_of(logits, labels, requested) == requested


@pytest.mark.parametrize(
    ("logits", "labels", "requested", "message"),
    [
        pytest.param((8,), (8, 2), None, NO_TASK.format(labels=[8, 2], logits=[8]), id="labels_of_more_dimensions"),
        pytest.param((8, 3), (8, 3, 1), None, NO_TASK.format(labels=[8, 3, 1], logits=[8, 3]), id="labels_of_one_more"),
        pytest.param((8, 3), (8,), "binary", "task: binary does not fit logits [8, 3] with labels [8] (it takes one logit a sample, (N,) or (N, 1), and labels (N,))", id="binary_with_classes"),
        pytest.param((8, 3), (8,), "multilabel", "task: multilabel does not fit logits [8, 3] with labels [8] (it takes logits (N, L, ...) and labels of their shape)", id="multilabel_with_classes"),
        pytest.param((8, 3), (8, 3), "multiclass", "task: multiclass does not fit logits [8, 3] with labels [8, 3] (it takes logits (N, C, ...) and labels (N, ...))", id="multiclass_with_labels"),
        pytest.param((8,), (8,), "multilabel", "task: multilabel does not fit logits [8] with labels [8] (it takes logits (N, L, ...) and labels of their shape)", id="flat_as_multilabel"),
        pytest.param((8, 3), (8,), "regression", 'task: expected one of multiclass, multilabel, binary, got "regression"', id="unknown_task"),
        pytest.param((8, 3), (8,), 1, "task: expected one of multiclass, multilabel, binary, got 1", id="not_a_name"),
    ],
)  # fmt: skip
def test_dimensions_that_fit_no_task_or_not_the_requested_one_are_422(
    logits: tuple[int, ...], labels: tuple[int, ...], requested: object, message: str
) -> None:
    with pytest.raises(RequestError) as error:
        task_of(logits, labels, requested)
    assert (error.value.status_code, error.value.message) == (422, message)
