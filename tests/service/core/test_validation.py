"""Checks on decoded arrays: every value the graph would misread is a 422 naming its field.

Sent through ``/score`` (JSON and .npz), as clients send them; the v2 protocol shares the
checks (tests/service/inference/test_dataplane.py).
"""

# ruff: noqa: E501 (tables of requests and their exact error messages, one per line)

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from focal_eval import focal
from focal_eval.service.app import create_app
from focal_eval.service.core.settings import Settings
from tests.service._inputs import batch
from tests.service._requests import LOGITS, NPZ, document, json_body, npz_body
from tests.service.reference import (
    DEFAULT_IGNORE_INDEX,
    assert_close,
    assert_error,
    assert_score_response,
    eager,
    flatten,
)

# --- JSON values out of their domain ---------------------------------------------------------

INVALID_JSON = [
    pytest.param(document(logits=[1.0, 2.0, 3.0], labels=[[0]]), "labels: shape [1, 1] with logits [3] fits no task: multiclass takes labels with one dimension fewer than the logits (the classes'), multilabel labels of the logits' shape (N, L, ...), binary one logit a sample", id="one_dimensional_logits"),
    pytest.param(document(logits=[[1.0, 2.0, 3.0]], labels=[[[0]]]), "labels: shape [1, 1, 1] with logits [1, 3] fits no task: multiclass takes labels with one dimension fewer than the logits (the classes'), multilabel labels of the logits' shape (N, L, ...), binary one logit a sample", id="labels_of_more_dimensions"),
    pytest.param(document(logits=[[None, 1.0, 2.0], [1.0, 2.0, 3.0]]), "logits: 1 values are NaN or infinite (first in row 0)", id="null_logit_is_non_finite"),
    pytest.param(document(logits=[[1e39, 1.0, 2.0], [1.0, 2.0, 3.0]]), "logits: 1 values are NaN or infinite (first in row 0)", id="logit_1e39_overflows_float32"),
    pytest.param(document(logits=[], labels=[]), "logits: expected at least one row, got an empty batch", id="empty_batch_n_0"),
    pytest.param(document(logits=[[1.0], [2.0]], task="multiclass"), "logits: expected at least 2 classes (dimension 1), got 1", id="one_class"),
    pytest.param(document(logits=[[], []]), "logits: expected at least 2 classes (dimension 1), got 0", id="zero_classes"),
    pytest.param(document(labels=[0, 1, 2]), "labels: expected shape [2] to match logits [2, 3], got [3]", id="labels_longer_than_n"),
    pytest.param(document(labels=[0]), "labels: expected shape [2] to match logits [2, 3], got [1]", id="labels_shorter_than_n"),
    pytest.param(document(labels=[0, 1.5]), "labels: expected integers, got floats", id="label_1_5"),
    pytest.param(document(labels=[True, False]), "labels: expected integers, got bool", id="bool_labels"),
    pytest.param(document(labels=["0", "1"]), "labels: expected integers", id="string_labels"),
    pytest.param(document(labels=[0, 3]), "labels: 1 values outside [0, 3) that are not ignore_index (-100); first 3 at index 1", id="label_equal_to_c"),
    pytest.param(document(labels=[-1, 0]), "labels: 1 values outside [0, 3)", id="label_minus_one"),
    pytest.param(document(labels=[0, 2**63]), "labels: values beyond the int64 range", id="label_beyond_int64"),
    pytest.param(document(labels=[0, 2**70]), "labels: values beyond the int64 range", id="label_beyond_64_bits"),
    pytest.param(document(gamma=-1), "gamma: expected a finite number >= 0, got -1", id="negative_gamma"),
    pytest.param(document(gamma="2"), 'gamma: expected a number, got "2"', id="gamma_a_string"),
    pytest.param(document(gamma=True), "gamma: expected a number, got true", id="gamma_a_bool"),
    pytest.param(document(gamma=[2.0]), "gamma: expected a number, got [2.0]", id="gamma_a_list"),
    pytest.param(document(gamma=1e39), "gamma: 1e+39 is beyond the float32 range", id="gamma_beyond_float32"),
    pytest.param(document(alpha=[1.0, 1.0]), "alpha: expected 3 values (one per class), got shape [2]", id="alpha_too_short"),
    pytest.param(document(alpha=[[1.0, 1.0, 1.0]]), "alpha: expected 3 values (one per class), got shape [1, 3]", id="alpha_nested"),
    pytest.param(document(alpha=[1.0, -0.5, 1.0]), "alpha: expected finite values >= 0", id="negative_alpha"),
    pytest.param(document(alpha=[1.0, 1e39, 1.0]), "alpha: expected finite values >= 0", id="alpha_beyond_float32"),
    pytest.param(document(ignore_index=1.5), "ignore_index: expected an integer, got 1.5", id="ignore_index_float"),
    pytest.param(document(ignore_index=-100.0), "ignore_index: expected an integer, got -100.0", id="ignore_index_integral_float"),
    pytest.param(document(ignore_index=True), "ignore_index: expected an integer, got true", id="ignore_index_a_bool"),
    pytest.param(document(ignore_index="-100"), 'ignore_index: expected an integer, got "-100"', id="ignore_index_a_string"),
    pytest.param(document(ignore_index=2**63), "ignore_index: 9223372036854775808 is outside the int64 range", id="ignore_index_beyond_int64"),
    pytest.param(document(ignore_index=2**70), "ignore_index: 1180591620717411303424 is outside the int64 range", id="ignore_index_beyond_64_bits"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), INVALID_JSON)
def test_invalid_json_value_is_422_naming_its_field(
    client: TestClient, body: dict[str, Any], message: str
) -> None:
    assert_error(client.post("/score", json=body), 422, message)


def test_label_minus_one_is_422_not_wrapped_to_last_class(client: TestClient) -> None:
    response = client.post("/score", json=document(labels=[0, -1]))
    assert_error(response, 422, "labels: 1 values outside [0, 3)", "first -1 at index 1")
    # declared as ignore_index, the same row is skipped: it counts for no class, not for C - 1
    logits, labels = np.asarray(LOGITS, np.float32), np.array([0, -1])
    got = client.post("/score", json=document(labels=[0, -1], ignore_index=-1)).json()
    assert got["valid"] == 1
    assert got["per_class"]["support"] == [1, 0, 0]
    assert_score_response(got, eager(logits, labels, ignore_index=-1))


def test_server_default_alpha_of_the_wrong_length_is_422_naming_focal_alpha(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(create_app(make_settings(alpha=[1.0, 2.0]))) as client:
        response = client.post("/score", json=document())
        assert_error(
            response,
            422,
            "alpha: the server's default alpha (FOCAL_ALPHA) has 2 values",
            "the batch has 3 classes",
        )
        assert client.post("/score", json=document(alpha=[1.0, 1.0, 1.0])).status_code == 200


# --- shapes and dtypes the checks convert ----------------------------------------------------


def test_segmentation_logits_are_flattened_with_the_class_dimension_last(
    client: TestClient,
) -> None:
    logits, labels = batch(2, 4, seed=3, spatial=(3, 5))
    labels[0, 1, :2] = DEFAULT_IGNORE_INDEX
    got = client.post("/score", json=json_body(logits, labels, gamma=1.5)).json()
    assert (got["n"], got["shape"], got["valid"]) == (30, [2, 3, 5], 28)
    assert_score_response(got, eager(*flatten(logits, labels), gamma=1.5))
    # independently of flatten(): the loss of the (N, C, d1, d2) tensor in the labels' order
    direct = focal.softmax_focal_loss(
        torch.from_numpy(logits), torch.from_numpy(labels), gamma=1.5, reduction="none"
    )
    assert_close(got["per_sample"]["focal_loss"], direct.numpy().reshape(-1), "focal_loss")


@pytest.mark.parametrize(
    "dtype", [pytest.param(np.float16, id="float16"), pytest.param(np.float64, id="float64")]
)
def test_npz_float16_and_float64_logits_are_scored_in_float32(
    client: TestClient, dtype: type
) -> None:
    sent, labels = batch(32, 4, seed=9, scale=3.0, dtype=dtype)
    got = client.post("/score", content=npz_body(logits=sent, labels=labels), headers=NPZ).json()
    assert_score_response(got, eager(sent.astype(np.float32), labels))


@pytest.mark.parametrize(
    "dtype", [pytest.param(np.int32, id="int32"), pytest.param(np.uint8, id="uint8")]
)
def test_npz_integer_label_dtypes_are_accepted(client: TestClient, dtype: type) -> None:
    logits, labels = batch(32, 4, seed=10)
    body = npz_body(logits=logits, labels=labels.astype(dtype))
    got = client.post("/score", content=body, headers=NPZ).json()
    assert_score_response(got, eager(logits, labels))


# --- .npz values out of their domain ---------------------------------------------------------


def _logits(value: float, dtype: type = np.float32) -> np.ndarray:
    logits: np.ndarray = np.zeros((3, 2), dtype)
    logits[1, 0] = value
    return logits


NPZ_LABELS = np.array([0, 1, 0])
INVALID_NPZ = [
    pytest.param(npz_body(logits=_logits(1e39, np.float64), labels=NPZ_LABELS), {}, "logits: 1 values are NaN or infinite (first in row 1); a float64 value beyond the float32 range", id="float64_beyond_float32"),
    pytest.param(npz_body(logits=_logits(np.nan), labels=NPZ_LABELS), {}, "logits: 1 values are NaN or infinite (first in row 1)", id="nan_logit"),
    pytest.param(npz_body(logits=_logits(np.inf), labels=NPZ_LABELS), {}, "logits: 1 values are NaN or infinite (first in row 1)", id="inf_logit"),
    pytest.param(npz_body(logits=_logits(-np.inf), labels=NPZ_LABELS), {}, "logits: 1 values are NaN or infinite (first in row 1)", id="minus_inf_logit"),
    pytest.param(npz_body(logits=_logits(0.0)[:0], labels=NPZ_LABELS[:0]), {}, "logits: expected at least one row, got an empty batch", id="empty_batch"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS.astype(np.float32)), {}, "labels: expected integers, got floats", id="float_labels"),
    pytest.param(npz_body(logits=_logits(0.0), labels=np.array([0, 2, 0])), {}, "labels: 1 values outside [0, 2)", id="label_out_of_range"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS, alpha=np.ones(3)), {}, "alpha: expected 2 values (one per class), got shape [3]", id="alpha_wrong_length"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"gamma": "-1"}, "gamma: expected a finite number >= 0, got -1.0", id="negative_gamma"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"gamma": "nan"}, "gamma: expected a finite number >= 0, got nan", id="nan_gamma"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "query", "message"), INVALID_NPZ)
def test_invalid_npz_value_is_422_naming_its_field(
    client: TestClient, body: bytes, query: dict[str, str], message: str
) -> None:
    response = client.post("/score", content=body, headers=NPZ, params=query)
    assert_error(response, 422, message)
