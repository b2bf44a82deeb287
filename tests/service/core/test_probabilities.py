"""Probabilities in: converted to logits whose softmax / sigmoid gives them back, clamped."""

# ruff: noqa: E501 (tables of inputs and their exact error messages, one per line)

from __future__ import annotations

import numpy as np
import pytest

from focal_eval.service.core.errors import RequestError
from focal_eval.service.core.probabilities import (
    PROBABILITY_FLOOR,
    check_inputs_kind,
    logits_of,
)


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def test_multiclass_rows_come_back_through_the_softmax() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=40)
    logits = logits_of("multiclass", p)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(softmax(logits.astype(np.float64)), p, rtol=1e-5, atol=1e-7)


def test_multiclass_zeros_are_clamped_to_the_floor() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    logits = logits_of("multiclass", p)
    assert np.isfinite(logits).all()
    np.testing.assert_allclose(logits[0], np.log([1.0, PROBABILITY_FLOOR, PROBABILITY_FLOOR]))
    # the cross entropy of a true class given probability 0 is -log(floor), about 16.1
    assert -np.log(softmax(logits.astype(np.float64))[0, 1]) == pytest.approx(
        -np.log(PROBABILITY_FLOOR), rel=1e-5
    )


@pytest.mark.parametrize("task", ["multilabel", "binary"])
def test_label_probabilities_come_back_through_the_sigmoid_within_the_clamp(task: str) -> None:
    p = np.array([[0.0, 1e-9, 0.25, 0.5, 0.75, 1.0 - 1e-9, 1.0]])
    logits = logits_of(task, p).astype(np.float64)
    expected = np.clip(p, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), expected, rtol=1e-6)
    assert logits[0, 3] == 0.0  # p = 0.5 is the logit 0: on the default threshold


def test_segmentation_shaped_rows_are_checked_along_the_class_dimension() -> None:
    p = np.full((2, 4, 3), 0.25)  # (N, C, d1): each (n, :, d) sums to 1
    assert logits_of("multiclass", p).shape == (2, 4, 3)


@pytest.mark.parametrize(
    ("task", "p", "message"),
    [
        pytest.param("multiclass", np.array([[0.5, 0.6], [0.5, 0.5]]), "logits: probabilities of a row must sum to 1 (within 0.001); row 0 sums to 1.1", id="row_sum"),
        pytest.param("multiclass", np.array([[0.5, 0.5], [1.5, -0.5]]), "logits: probabilities must lie in [0, 1]; 1.5 at [1, 0]", id="above_one"),
        pytest.param("multilabel", np.array([[0.5, -0.1]]), "logits: probabilities must lie in [0, 1]; -0.1 at [0, 1]", id="negative"),
        pytest.param("binary", np.array([0.5, np.nan]), "logits: probabilities must lie in [0, 1]; nan at [1]", id="nan"),
        pytest.param("binary", np.array([True, False]), "logits: expected numbers, got bool values", id="booleans"),
    ],
)  # fmt: skip
def test_values_that_are_not_probabilities_are_422(task: str, p: np.ndarray, message: str) -> None:
    with pytest.raises(RequestError) as error:
        logits_of(task, p)
    assert (error.value.status_code, error.value.message) == (422, message)


def test_the_inputs_kind_is_logits_or_probabilities() -> None:
    assert check_inputs_kind(None) == "logits"
    assert check_inputs_kind("probabilities") == "probabilities"
    with pytest.raises(RequestError) as error:
        check_inputs_kind("scores")
    assert error.value.message == 'inputs: expected one of logits, probabilities, got "scores"'
