"""v2 inference responses: every output, JSON or binary, reads back exactly in tritonclient."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from focal_eval.service.core.errors import RequestError
from focal_eval.service.inference.datatypes import HEADER_LENGTH, RequestedOutput
from focal_eval.service.inference.decode import decode_infer_request
from tests.service.inference._triton import (
    DATATYPES,
    assert_identical,
    encoded,
    parse_response,
    request_body,
    sample,
)

OUTPUTS = {name: sample(name) for name in DATATYPES}


@pytest.mark.parametrize(
    "binary", [pytest.param(True, id="binary"), pytest.param(False, id="json")]
)
def test_all_outputs_roundtrip_through_tritonclient(binary: bool) -> None:
    body, headers = encoded("focal", "1", "req-1", OUTPUTS, None, binary)
    if binary:
        assert headers["Content-Type"] == "application/octet-stream"
        assert int(headers[HEADER_LENGTH]) < len(body)
    else:
        assert headers == {"Content-Type": "application/json"}
    result = parse_response(body, headers)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "focal",
        "1",
        "req-1",
    )
    assert [output["name"] for output in response["outputs"]] == list(OUTPUTS)
    for name, array in OUTPUTS.items():
        assert_identical(result.as_numpy(name), array)


def test_mixed_outputs_follow_the_requested_order_and_flags() -> None:
    requested = (
        RequestedOutput("INT64", False),
        RequestedOutput("FP16", True),
        RequestedOutput("BOOL", False),
        RequestedOutput("FP32", True),
    )
    body, headers = encoded("focal", None, None, OUTPUTS, requested, False)
    result = parse_response(body, headers)
    response = result.get_response()
    assert "model_version" not in response
    assert "id" not in response
    assert [output["name"] for output in response["outputs"]] == ["INT64", "FP16", "BOOL", "FP32"]
    assert ["data" in output for output in response["outputs"]] == [True, False, True, False]
    expected_size = OUTPUTS["FP16"].nbytes
    assert response["outputs"][1]["parameters"] == {"binary_data_size": expected_size}
    for output in requested:
        assert_identical(result.as_numpy(output.name), OUTPUTS[output.name])


def test_json_output_is_a_flat_list() -> None:
    outputs = {"probs": np.array([[0.5, 0.25], [1.0, 2.0]], dtype=np.float32)}
    body, _ = encoded("focal", None, None, outputs, None, False)
    assert orjson.loads(body)["outputs"] == [
        {"name": "probs", "datatype": "FP32", "shape": [2, 2], "data": [0.5, 0.25, 1.0, 2.0]}
    ]


def test_json_output_writes_non_finite_as_null() -> None:
    values = np.array([np.nan, np.inf, 1.0], dtype=np.float32)
    body, headers = encoded("focal", None, None, {"v": values}, None, False)
    assert orjson.loads(body)["outputs"][0]["data"] == [None, None, 1.0]
    # tritonclient reads null back as NaN: infinities do not survive JSON.
    decoded = parse_response(body, headers).as_numpy("v")
    assert np.isnan(decoded[:2]).all()


def test_binary_output_keeps_non_finite_values() -> None:
    values = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=np.float32)
    body, headers = encoded("focal", None, None, {"v": values}, None, True)
    assert_identical(parse_response(body, headers).as_numpy("v"), values)


@pytest.mark.parametrize(
    "binary", [pytest.param(True, id="binary"), pytest.param(False, id="json")]
)
@pytest.mark.parametrize(
    "array",
    [
        pytest.param(np.arange(6, dtype=">f4").reshape(2, 3), id="big-endian"),
        pytest.param(np.arange(6, dtype=np.float64).reshape(2, 3).T, id="transposed"),
        pytest.param(np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2], id="strided"),
        pytest.param(np.array(3.5, dtype=np.float32), id="scalar"),
        pytest.param(np.zeros((0, 3), dtype=np.float32), id="empty"),
    ],
)
def test_any_layout_is_encoded_little_endian_row_major(array: np.ndarray, binary: bool) -> None:
    body, headers = encoded("focal", None, None, {"y": array}, None, binary)
    decoded = parse_response(body, headers).as_numpy("y")
    assert decoded.shape == array.shape
    assert decoded.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(decoded, array)


def test_unknown_requested_output_is_400_naming_it() -> None:
    requested = (RequestedOutput("FP32", True), RequestedOutput("loss", True))
    with pytest.raises(RequestError) as caught:
        encoded("focal", None, None, OUTPUTS, requested, False)
    assert caught.value.status_code == 400
    assert caught.value.message.startswith("outputs[1] (loss): no such output; the model produces")


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.dtype(t) for t in DATATYPES.values()]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    ),
    binary=st.booleans(),
)
def test_any_array_roundtrips_request_and_response(array: np.ndarray, binary: bool) -> None:
    if not binary and array.dtype.kind == "f":
        array = np.asarray(
            np.nan_to_num(array, nan=0.5, posinf=1.0, neginf=-1.0)
        )  # JSON has no NaN/inf
    request = decode_infer_request(*request_body({"x": array}, binary=binary))
    assert request.inputs["x"].tobytes() == array.tobytes()
    assert request.inputs["x"].shape == array.shape
    body, headers = encoded("m", None, None, request.inputs, None, binary)
    decoded = parse_response(body, headers).as_numpy("x")
    assert decoded.dtype == array.dtype
    assert decoded.tobytes() == array.tobytes()
